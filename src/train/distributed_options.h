// Who takes part in data-parallel work and where the ranks meet (torch-free: option structs
// hold it; train/distributed.h does the communication).
//
// Ranks meet through a store: "file:PATH" (a file every rank can reach: ranks on one machine or
// a shared file system; PATH must not exist before the run) or "tcp:HOST:PORT" (rank 0 listens
// on PORT; the others connect to HOST).
#pragma once
#include <string>

namespace unravel {

struct DistributedOptions {
  int world_size = 1;   ///< processes working together
  int rank = 0;         ///< this process, 0..world_size-1; rank 0 writes the results
  std::string store;    ///< file:PATH | tcp:HOST:PORT (required when world_size > 1)
  int timeout_s = 900;  ///< a collective that waits longer than this fails (a rank died)
};

// Throws UserError naming --world-size / --rank / --store when they do not fit together.
void check_distributed_options(const DistributedOptions& o);

}  // namespace unravel
