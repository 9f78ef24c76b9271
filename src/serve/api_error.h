// What a handler answers when a request cannot be served: an HTTP status and the error JSON
// of the API the request came through (OpenAI's or Anthropic's), naming the field at fault.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace cachet::serve {

class ApiError : public std::runtime_error {
 public:
  // `type`: OpenAI's error type ("invalid_request_error", "not_found_error", ...).
  ApiError(int status, std::string message, std::string param = {},
           std::string type = "invalid_request_error")
      : std::runtime_error(message),
        status_(status),
        param_(std::move(param)),
        type_(std::move(type)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& type() const { return type_; }

  // {"error": {"message", "type", "param", "code"}}
  nlohmann::json openai_json() const {
    return {{"error",
             {{"message", what()},
              {"type", type_},
              {"param", param_.empty() ? nlohmann::json(nullptr) : nlohmann::json(param_)},
              {"code", nullptr}}}};
  }
  // {"type": "error", "error": {"type", "message"}}
  nlohmann::json anthropic_json() const {
    return {{"type", "error"}, {"error", {{"type", type_}, {"message", what()}}}};
  }

 private:
  int status_;
  std::string param_;
  std::string type_;
};

}  // namespace cachet::serve
