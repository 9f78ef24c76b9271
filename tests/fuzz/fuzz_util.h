// Shared by the fuzz targets (tests/fuzz/fuzz_*.cpp). Each target defines
// LLVMFuzzerTestOneInput; it is linked either with libFuzzer (the `fuzz` preset, clang) or
// with replay_main.cpp, which runs the checked-in corpus through it as an ordinary test in
// every other build (gcc, ASan).
//
// A target's contract: cachet::Error is the only acceptable failure of a parser. Anything
// else thrown, a broken invariant or a sanitizer report is a bug, and the target aborts so
// that libFuzzer keeps the input.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "cachet/errors.h"

namespace cachet::fuzz {

// Stops the run with a message; libFuzzer records the input as a crash.
[[noreturn]] inline void bug(const std::string& what) {
  std::fprintf(stderr, "fuzz target found a bug: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

inline void require(bool ok, const std::string& what) {
  if (!ok) bug(what);
}

// Runs `body`. A cachet::Error is the expected outcome of bad input; it must say something.
// Any other exception escaping a cachet API is a bug.
template <typename F>
bool accepts(F&& body) {
  try {
    body();
    return true;
  } catch (const Error& e) {
    require(std::string_view(e.what()).size() > 0, "cachet::Error with an empty message");
    return false;
  } catch (const std::exception& e) {
    bug(std::string("exception other than cachet::Error: ") + e.what());
  } catch (...) {
    bug("non-standard exception");
  }
}

// A private directory for the file-based parsers, in /dev/shm when there is one (each
// input is written to a file; memory is faster than disk). Removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::filesystem::path d = base / ("cachet-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, const std::uint8_t* data,
                       std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  require(out.good(), "cannot write " + path.string());
}

inline void write_file(const std::filesystem::path& path, std::string_view text) {
  write_file(path, reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

// Consumes fuzzer bytes as small decisions. Returns zeros once the input is exhausted, so
// every input is a complete program.
class ByteReader {
 public:
  ByteReader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  bool empty() const { return at_ >= size_; }
  std::uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }
  // Uniform-ish in [lo, hi] (inclusive), from one or two bytes.
  int range(int lo, int hi) {
    const unsigned span = static_cast<unsigned>(hi - lo) + 1;
    unsigned v = byte();
    if (span > 256) v = (v << 8) | byte();
    return lo + static_cast<int>(v % span);
  }
  bool flag() { return byte() & 1; }
  // What is left, as a string.
  std::string_view rest() {
    std::string_view s(reinterpret_cast<const char*>(data_ + at_), size_ - at_);
    at_ = size_;
    return s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

}  // namespace cachet::fuzz
