// num_threads = 0: the CPUs this process may use. The cgroup quota is read from fake cgroup
// trees (v1 and v2) written here; the affinity part against a mask set on this thread.
#include <gtest/gtest.h>
#include <sched.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "support/test_support.h"
#include "util/cpu_count.h"

namespace cachet {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using util::cgroup_cpu_quota;

void put(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  testing::write_file(file, text + "\n");
}

TEST(CgroupQuota, V2TakesTheTightestCpuMaxAlongThePath) {
  TempDir root;
  put(root.path() / "cpu.max", "max 100000");
  put(root.path() / "a/cpu.max", "150000 100000");
  put(root.path() / "a/b/cpu.max", "max 100000");
  EXPECT_DOUBLE_EQ(*cgroup_cpu_quota("0::/a/b\n", root.path()), 1.5);
  put(root.path() / "a/b/cpu.max", "50000 100000");
  EXPECT_DOUBLE_EQ(*cgroup_cpu_quota("0::/a/b\n", root.path()), 0.5);
  EXPECT_FALSE(cgroup_cpu_quota("0::/\n", root.path()).has_value());  // "max": no quota
}

TEST(CgroupQuota, AContainerSeesItsOwnCgroupAsTheRoot) {
  TempDir root;
  put(root.path() / "cpu.max", "200000 100000");
  // The path names a cgroup of the host, which is not under this mount.
  EXPECT_DOUBLE_EQ(*cgroup_cpu_quota("0::/system.slice/docker-1234.scope\n", root.path()), 2.0);
}

TEST(CgroupQuota, V1ReadsTheCfsQuotaOfTheCpuController) {
  TempDir root;
  put(root.path() / "cpu,cpuacct/job/cpu.cfs_quota_us", "250000");
  put(root.path() / "cpu,cpuacct/job/cpu.cfs_period_us", "100000");
  const std::string cgroup = "5:memory:/job\n4:cpu,cpuacct:/job\n1:name=systemd:/\n";
  EXPECT_DOUBLE_EQ(*cgroup_cpu_quota(cgroup, root.path()), 2.5);
  put(root.path() / "cpu,cpuacct/job/cpu.cfs_quota_us", "-1");  // v1's "no quota"
  EXPECT_FALSE(cgroup_cpu_quota(cgroup, root.path()).has_value());
}

TEST(CgroupQuota, NothingReadableMeansNoQuota) {
  TempDir root;
  EXPECT_FALSE(cgroup_cpu_quota("", root.path()).has_value());
  EXPECT_FALSE(cgroup_cpu_quota("garbage", root.path()).has_value());
  put(root.path() / "cpu.max", "lots 100000");
  EXPECT_FALSE(cgroup_cpu_quota("0::/\n", root.path()).has_value());
}

TEST(UsableCpus, FollowsThisThreadsAffinityMask) {
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
  const int before = util::usable_cpus();
  EXPECT_GE(before, 1);
  EXPECT_LE(before, CPU_COUNT(&all));
  if (!testing::pin_to_one_cpu()) GTEST_SKIP() << "one CPU: nothing to restrict";
  const int pinned = util::usable_cpus();
  ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
  EXPECT_EQ(pinned, 1);
}

}  // namespace
}  // namespace cachet
