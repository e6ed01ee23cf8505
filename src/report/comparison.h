// The report's parsed experiments and its comparison table (internal to src/report): results.json
// read into typed studies (every malformed field one line), and our numbers beside the paper's.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "report/report.h"
#include "report/results.h"

namespace unravel::report::detail {

struct Deletions {
  int n = 0, x = 11;
  std::vector<LengthShares> paths;
};

struct Parsed {
  std::vector<std::pair<std::string, LesionStudy>> e1;  // resnet, plain
  std::vector<std::pair<std::string, LesionStudy>> e2;  // the imported network (--preset imagenet)
  std::optional<LesionStudy> e3, e4;
  std::optional<LengthShares> e5;
  std::vector<Gradients> e6;  // sample, exact
  std::optional<ShortPathTraining> e7;
  std::optional<Deletions> e8;
  std::vector<std::pair<std::string, LesionStudy>> e9;  // stochastic, resnet
};

// results.json (or its parts) parsed; `where` names the file in errors.
Parsed parse_results(const nlohmann::json& r, const std::string& where);

// The paper's single-deletion numbers for one kind of network.
struct PaperSingle {
  std::string intact, median, worst, downsampling;
};
const PaperSingle& paper_for(const std::string& model);  // plain nets vs ResNets (CIFAR-10)

// Rows of the comparison table, one function per kind of study.
void rows_single(std::vector<ComparisonRow>& rows, const std::string& id, const std::string& who,
                 const LesionStudy& l, const PaperSingle& paper);
void rows_random_deletion(std::vector<ComparisonRow>& rows, const std::string& id, const LesionStudy& l);
void rows_reorder(std::vector<ComparisonRow>& rows, const std::string& id, const LesionStudy& l);
void rows_paths(std::vector<ComparisonRow>& rows, const std::string& id, const LengthShares& p);
void rows_gradients(std::vector<ComparisonRow>& rows, const std::string& id, const std::vector<Gradients>& g);
void rows_deletions(std::vector<ComparisonRow>& rows, const std::string& id, const Deletions& d);
// Every row for a parsed results.json.
std::vector<ComparisonRow> rows_for(const Parsed& p);

}  // namespace unravel::report::detail
