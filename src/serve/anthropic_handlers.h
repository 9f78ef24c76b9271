// Anthropic's Messages API: POST /v1/messages. Throws ApiError for a request it refuses
// (the server writes it in Anthropic's error shape).
#pragma once

#include <httplib.h>

#include "serve/server_context.h"

namespace cachet::serve {

void handle_messages(ServerContext& ctx, const httplib::Request& req, httplib::Response& res);

}  // namespace cachet::serve
