// The machinery behind the gradient methods (internal to src/paths): the loss and the pieces of
// a forward pass, the recorded forward (tape) with its per-block vector-Jacobian products, and the
// two engines that give single-path gradient norms (chain and replicated; see gradients.h).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "models/network.h"

namespace unravel {
class Progress;
}

namespace unravel::paths::detail {

using models::Network;

// Squared Frobenius norm accumulated in double; an undefined tensor is zero.
double sq_norm(const torch::Tensor& t);
torch::Tensor mean_loss(const torch::Tensor& logits, const torch::Tensor& labels);
torch::Tensor stem_output(Network& net, const torch::Tensor& images);
// Runs the steps of `plan` from h (the input of the first step) with the network's gates.
torch::Tensor run_blocks(Network& net, torch::Tensor h, const Plan& plan,
                         const std::vector<models::StepExtras>* extras = nullptr);
// d loss / d h0 through autograd: the whole network, or one path given by per-block flags
// (index block-1: 1 = residual) through the Plan gates.
torch::Tensor input_gradient_impl(Network& net, const torch::Tensor& images, const torch::Tensor& labels);
torch::Tensor path_gradient_impl(Network& net, const torch::Tensor& h0_base, const torch::Tensor& labels,
                                 const std::vector<uint8_t>& flags);

// One block of the intact forward, each with its own graph: x is a detached leaf, so the
// vector-Jacobian products of one block never run into the blocks before it.
struct BlockTape {
  int block = 0;
  torch::Tensor x;     // input (B, C, H, W), leaf requiring grad
  torch::Tensor s;     // shortcut(x); undefined when the block has no skip
  torch::Tensor r;     // residual(x) * residual_scale
  torch::Tensor z;     // s + r (or r)
  torch::Tensor y;     // post(z), the block output
  torch::Tensor mask;  // post is ReLU: (y > 0) in the dtype of y; undefined otherwise
  bool has_skip = true;
  bool s_identity = false;     // shortcut(x) is x itself: S^T is the identity
  bool post_identity = false;  // post(z) is z itself: P^T is the identity
};

struct Tape {
  std::vector<BlockTape> blocks;  // in plan order (block b at position b-1 for the default plan)
  torch::Tensor v_out;            // d loss / d (output of the last block)
};

// The intact forward under the default plan, block by block.
Tape record_tape(Network& net, const torch::Tensor& images, const torch::Tensor& labels);

// The per-length recursion: v_k <- S^T(P^T v_k) + eps_i R^T(P^T v_{k-1}), last block first.
// Returns g_0..g_n at the input of block 1 (undefined = zero). eps: per plan position, signs
// broadcast over the cotangent, (1,1,1,1) or per sample (B,1,1,1).
std::vector<torch::Tensor> decompose(const Tape& tape, const std::vector<torch::Tensor>* eps);

// Chain engine: ||g_S|| per set; flags[i][pos] = 1 when the block at plan position pos takes its
// residual branch.
std::vector<double> chain_norms(const Tape& tape, const std::vector<std::vector<uint8_t>>& flags,
                                Progress* progress);

// Replicated engine (batch norm in eval mode only): ||g_S|| per set; flags[i][block-1] = 1 when
// the block takes its residual branch. max_rows: rows of one backward, 0 = about 1 GiB.
std::vector<double> replicated_norms(Network& net, const torch::Tensor& images, const torch::Tensor& labels,
                                     const std::vector<std::vector<uint8_t>>& flags, int64_t max_rows,
                                     Progress* progress);

}  // namespace unravel::paths::detail
