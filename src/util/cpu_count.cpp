#include "util/cpu_count.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace cachet::util {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> read_small_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  std::ifstream in(path);
  std::string text;
  if (!in || !std::getline(in, text)) return std::nullopt;
  return text;
}

// "200000 100000" (quota period) -> 2.0; "max 100000" or anything unreadable -> nullopt.
std::optional<double> ratio(std::string_view quota_text, std::string_view period_text) {
  try {
    if (quota_text.starts_with("max")) return std::nullopt;
    const double quota = std::stod(std::string(quota_text));
    const double period = std::stod(std::string(period_text));
    if (quota <= 0 || period <= 0) return std::nullopt;  // v1 says -1 for "no quota"
    return quota / period;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<double> v2_quota(const fs::path& dir) {
  auto text = read_small_file(dir / "cpu.max");
  if (!text) return std::nullopt;
  std::istringstream fields(*text);
  std::string quota, period;
  fields >> quota >> period;
  return ratio(quota, period.empty() ? "100000" : period);
}

std::optional<double> v1_quota(const fs::path& dir) {
  auto quota = read_small_file(dir / "cpu.cfs_quota_us");
  auto period = read_small_file(dir / "cpu.cfs_period_us");
  if (!quota || !period) return std::nullopt;
  return ratio(*quota, *period);
}

// The tightest quota from `dir` up to `root`; a cgroup path that does not exist under the
// mount (a container sees its own cgroup as the root) starts at the root.
template <class Quota>
std::optional<double> tightest(const fs::path& root, std::string_view cgroup_path, Quota quota) {
  fs::path rel = fs::path(cgroup_path).relative_path();
  std::error_code ec;
  if (!fs::is_directory(root / rel, ec)) rel.clear();
  std::optional<double> best;
  for (;;) {
    if (auto q = quota(root / rel)) best = best ? std::min(*best, *q) : *q;
    if (rel.empty()) return best;
    rel = rel.parent_path();
  }
}

}  // namespace

std::optional<double> cgroup_cpu_quota(std::string_view proc_self_cgroup, const fs::path& root) {
  std::optional<double> best;
  auto keep = [&](std::optional<double> q) {
    if (q) best = best ? std::min(*best, *q) : *q;
  };
  std::istringstream lines{std::string(proc_self_cgroup)};
  for (std::string line; std::getline(lines, line);) {
    // "hierarchy-id:controllers:path"; v2 is "0::path", v1 lists its controllers.
    const auto a = line.find(':');
    const auto b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (controllers.empty()) {
      keep(tightest(root, path, v2_quota));
      continue;
    }
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) {
      if (name != "cpu") continue;
      // v1 mounts the cpu controller alone or together with cpuacct.
      for (const char* mount : {"cpu", "cpu,cpuacct", "cpuacct,cpu"})
        keep(tightest(root / mount, path, v1_quota));
    }
  }
  return best;
}

int usable_cpus() {
  int cpus = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
  std::ifstream in("/proc/self/cgroup");
  std::stringstream text;
  text << in.rdbuf();
  if (auto quota = cgroup_cpu_quota(text.str(), "/sys/fs/cgroup"))
    cpus = std::min(cpus, static_cast<int>(std::ceil(*quota)));
  return std::max(1, cpus);
}

}  // namespace cachet::util
