# Every dependency is a Debian package installed by scripts/install-deps.sh.
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(xxhash REQUIRED IMPORTED_TARGET libxxhash)
pkg_check_modules(pcre2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(utf8proc REQUIRED IMPORTED_TARGET libutf8proc)
# cpp-httplib for `cachet serve` (Debian builds it as a library: link it, and compile with
# the same CPPHTTPLIB_* options its pkg-config file gives).
pkg_check_modules(httplib REQUIRED IMPORTED_TARGET cpp-httplib)
# prometheus-cpp for the server's /metrics: its core library only (the registry, metric types
# and the text exposition format); cpp-httplib serves the endpoint.
find_package(prometheus-cpp CONFIG REQUIRED)
if(CACHET_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(CACHET_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
