// The OpenAI API's generation endpoints: POST /v1/completions and /v1/chat/completions.
// Throw ApiError for a request they refuse (the server writes it as the API's error JSON).
#pragma once

#include <httplib.h>

#include "serve/server_context.h"

namespace cachet::serve {

void handle_completions(ServerContext& ctx, const httplib::Request& req, httplib::Response& res);
void handle_chat_completions(ServerContext& ctx, const httplib::Request& req,
                             httplib::Response& res);

}  // namespace cachet::serve
