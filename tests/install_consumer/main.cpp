// Uses the installed library (tests/install_consumer/run.sh compares this output with values
// computed independently): a plan from the plan parser, exact path counts, and a network built
// and run through libtorch.
#include <cstdio>

#include "core/plan.h"
#include "models/network.h"
#include "paths/path_counts.h"

int main() {
  using namespace unravel;
  const Plan plan = Plan::parse("delete=3,17", /*n_blocks=*/54);
  const std::vector<int> deleted = plan.deleted_blocks();
  paths::PathOptions options(plan.n_blocks());
  options.deleted = static_cast<int>(deleted.size());
  const paths::PathDistribution dist = paths::path_lengths(options);
  std::printf("deleted %s\n", format_index_list(deleted).c_str());
  std::printf("paths_of_length_27 %s\n", dist.lengths.at(27).count.c_str());
  std::printf("kept_of_length_27 %s\n", dist.lengths.at(27).kept_count.c_str());

  models::Network net(models::NetworkOptions("preresnet20").in_channels(3).input_size(32, 32)
                          .num_classes(10));
  net->eval();
  const torch::Tensor logits = net->forward(torch::zeros({2, 3, 32, 32}));
  std::printf("num_blocks %d\n", net->num_blocks());
  std::printf("num_parameters %lld\n", static_cast<long long>(net->num_parameters()));
  std::printf("logits %lldx%lld\n", static_cast<long long>(logits.size(0)),
              static_cast<long long>(logits.size(1)));
  return 0;
}
