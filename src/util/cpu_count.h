// How many CPUs this process may use: what EngineConfig::num_threads = 0 means.
#pragma once

#include <filesystem>
#include <optional>
#include <string_view>

namespace cachet::util {

// The CPUs of this thread's affinity mask (sched_getaffinity: taskset, numactl, a container's
// cpuset), capped by the cgroup CPU quota where one is set (a container's --cpus), rounded
// up; at least 1. Falls back to std::thread::hardware_concurrency() where neither is known.
int usable_cpus();

// The CPU quota (CPUs' worth of time, e.g. 1.5) of the cgroup a process is in, given the
// contents of its /proc/self/cgroup and where the cgroup filesystem is mounted: the
// tightest cpu.max (cgroup v2) or cpu.cfs_quota_us / cpu.cfs_period_us (v1) along the
// cgroup's path up to the root; nullopt when no quota is set or none can be read.
std::optional<double> cgroup_cpu_quota(std::string_view proc_self_cgroup,
                                       const std::filesystem::path& cgroup_root);

}  // namespace cachet::util
