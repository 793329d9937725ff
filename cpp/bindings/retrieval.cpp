// Bindings for retrieval and similarity kernels: top-k search, target ranks,
// row-wise and pairwise similarity. Checks arguments, releases the GIL, and turns
// a non-finite bank row into a ValueError naming the row.
#include <pybind11/numpy.h>

#include <string>

#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "checks.hpp"
#include "seqlab/similarity.hpp"
#include "seqlab/topk.hpp"

namespace seqlab::bind {
namespace {

namespace py = pybind11;
using f32 = py::array_t<float, py::array::c_style>;
using i64 = py::array_t<std::int64_t, py::array::c_style>;

Metric parse_metric(const std::string& name) {
  if (name == "ip" || name == "inner_product" || name == "dot") return Metric::inner_product;
  if (name == "cosine") return Metric::cosine;
  if (name == "l2") return Metric::l2;
  throw py::value_error("metric: expected 'cosine', 'ip' or 'l2', got '" + name + "'");
}

SearchPath parse_path(const std::string& name) {
  if (name == "auto") return SearchPath::automatic;
  if (name == "simd") return SearchPath::simd;
  if (name == "gemm") return SearchPath::gemm;
  throw py::value_error("path: expected 'auto', 'simd' or 'gemm', got '" + name + "'");
}

std::string dims(py::ssize_t a, py::ssize_t b) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
}

// Checks queries (Q, D) finite and bank (N, D) non-empty with the same D.
void check_pair(const f32& q, const f32& bank, const char* bank_name) {
  if (bank.shape(0) == 0)
    throw py::value_error(std::string(bank_name) + ": is empty, shape " + shape_str(bank));
  if (q.shape(1) != bank.shape(1))
    throw py::value_error(std::string("queries and ") + bank_name +
                          ": dimensions differ, queries " + shape_str(q) + ", " + bank_name + " " +
                          shape_str(bank));
  if (q.shape(1) == 0) throw py::value_error("queries: dimension D is 0");
  require_finite(q, "queries");
}

[[noreturn]] void raise_nonfinite(const NonFiniteScore& e, const f32& bank, const char* bank_name,
                                  std::int64_t offset) {
  const std::string where =
      offset ? " (in a chunk of shape " + dims(bank.shape(0), bank.shape(1)) + " from row " +
                   std::to_string(offset) + ")"
             : " of " + dims(bank.shape(0), bank.shape(1));
  throw py::value_error(std::string(bank_name) + ": row " + std::to_string(e.row) + where +
                        " gives a non-finite score: it contains NaN or Inf, or its values "
                        "overflow float32");
}

py::tuple topk(const py::handle& queries_obj, const py::handle& bank_obj, py::ssize_t k,
               const std::string& metric_name, const std::string& path_name,
               std::int64_t index_offset) {
  const Metric metric = parse_metric(metric_name);
  const SearchPath path = parse_path(path_name);
  auto q = require<float>(queries_obj, "queries", {-1, -1});
  auto bank = require<float>(bank_obj, "bank", {-1, -1});
  check_pair(q, bank, "bank");
  const py::ssize_t Q = q.shape(0), N = bank.shape(0), D = q.shape(1);
  if (k < 1 || k > N)
    throw py::value_error("k: must be in [1, N] for a bank of shape " + shape_str(bank) +
                          ", got k=" + std::to_string(k));
  f32 scores({Q, k});
  i64 indices({Q, k});
  const float* qp = q.data();
  const float* bp = bank.data();
  float* sp = scores.mutable_data();
  std::int64_t* ip = indices.mutable_data();
  try {
    py::gil_scoped_release release;
    kernels().topk_search(qp, static_cast<std::size_t>(Q), bp, static_cast<std::size_t>(N),
                static_cast<std::size_t>(D), static_cast<std::size_t>(k), metric, path,
                index_offset, sp, ip);
  } catch (const NonFiniteScore& e) {
    raise_nonfinite(e, bank, "bank", index_offset);
  }
  return py::make_tuple(scores, indices);
}

f32 ranking_scores_py(const py::handle& queries_obj, const py::handle& rows_obj,
                      const std::string& metric_name) {
  const Metric metric = parse_metric(metric_name);
  auto q = require<float>(queries_obj, "queries", {-1, -1});
  auto rows = require<float>(rows_obj, "rows", {q.shape(0), q.shape(1)});
  require_finite(q, "queries");
  f32 out({q.shape(0)});
  const float* qp = q.data();
  const float* rp = rows.data();
  float* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    kernels().ranking_scores(qp, rp, static_cast<std::size_t>(q.shape(0)), static_cast<std::size_t>(q.shape(1)),
                   metric, op);
  }
  return out;
}

void count_above_py(const py::handle& queries_obj, const py::handle& bank_obj,
                    const py::handle& target_scores_obj, const py::handle& targets_obj,
                    const py::handle& counts_obj, const std::string& metric_name,
                    const std::string& path_name, std::int64_t index_offset) {
  const Metric metric = parse_metric(metric_name);
  const SearchPath path = parse_path(path_name);
  auto q = require<float>(queries_obj, "queries", {-1, -1});
  auto bank = require<float>(bank_obj, "bank", {-1, -1});
  check_pair(q, bank, "bank");
  const py::ssize_t Q = q.shape(0);
  auto ts = require<float>(target_scores_obj, "target_scores", {Q});
  auto t = require<std::int64_t>(targets_obj, "targets", {Q});
  auto counts = require_writeable<std::int64_t>(counts_obj, "counts", {Q});
  const float* qp = q.data();
  const float* bp = bank.data();
  const float* tsp = ts.data();
  const std::int64_t* tp = t.data();
  std::int64_t* cp = counts.mutable_data();
  try {
    py::gil_scoped_release release;
    kernels().count_ranked_above(qp, static_cast<std::size_t>(Q), bp, static_cast<std::size_t>(bank.shape(0)),
                       static_cast<std::size_t>(q.shape(1)), metric, path, tsp, tp, index_offset,
                       cp);
  } catch (const NonFiniteScore& e) {
    raise_nonfinite(e, bank, "bank", index_offset);
  }
}

f32 rowwise_cosine_py(const py::handle& a_obj, const py::handle& b_obj, const py::object& mask_obj,
                      float eps) {
  auto a = require<float>(a_obj, "a", {-1, -1});
  auto b = require<float>(b_obj, "b", {a.shape(0), a.shape(1)});
  py::array_t<std::uint8_t, py::array::c_style> mask;
  const std::uint8_t* mp = nullptr;
  if (!mask_obj.is_none()) {
    auto m = py::reinterpret_borrow<py::array>(mask_obj);
    if (!py::isinstance<py::array_t<std::uint8_t>>(m) || m.ndim() != 1 || m.shape(0) != a.shape(0) ||
        !(m.flags() & py::array::c_style))
      throw py::value_error("mask: expected a C-contiguous uint8 array of shape (" +
                            std::to_string(a.shape(0)) + ",)");
    mask = py::reinterpret_borrow<py::array_t<std::uint8_t, py::array::c_style>>(m);
    mp = mask.data();
  }
  f32 out({a.shape(0)});
  const float* ap = a.data();
  const float* bp = b.data();
  float* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    kernels().rowwise_cosine(ap, bp, static_cast<std::size_t>(a.shape(0)), static_cast<std::size_t>(a.shape(1)),
                   mp, eps, op);
  }
  return out;
}

f32 pairwise_scores_py(const py::handle& a_obj, const py::handle& b_obj,
                       const std::string& metric_name) {
  const Metric metric = parse_metric(metric_name);
  auto a = require<float>(a_obj, "a", {-1, -1});
  auto b = require<float>(b_obj, "b", {-1, a.shape(1)});
  f32 out({a.shape(0), b.shape(0)});
  const float* ap = a.data();
  const float* bp = b.data();
  float* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    kernels().pairwise_scores(ap, static_cast<std::size_t>(a.shape(0)), bp, static_cast<std::size_t>(b.shape(0)),
                    static_cast<std::size_t>(a.shape(1)), metric, op);
  }
  return out;
}

}  // namespace

void bind_retrieval(py::module_& m) {
  m.def("topk", &topk, py::arg("queries"), py::arg("bank"), py::arg("k"),
        py::arg("metric") = "cosine", py::arg("path") = "auto", py::arg("index_offset") = 0,
        "Exact top-k of queries (Q, D) against bank (N, D): (scores (Q, k), indices (Q, k)), "
        "best first; l2 scores are squared distances, ascending.");
  m.def("ranking_scores", &ranking_scores_py, py::arg("queries"), py::arg("rows"),
        py::arg("metric") = "cosine",
        "Ranking score of each query against its paired row (l2: 2 q.b - |b|^2).");
  m.def("count_ranked_above", &count_above_py, py::arg("queries"), py::arg("bank"),
        py::arg("target_scores"), py::arg("targets"), py::arg("counts"),
        py::arg("metric") = "cosine", py::arg("path") = "auto", py::arg("index_offset") = 0,
        "Adds to counts[q] the bank rows ranked above target q (higher score, or equal "
        "score and lower index).");
  m.def("rowwise_cosine", &rowwise_cosine_py, py::arg("a"), py::arg("b"),
        py::arg("mask") = py::none(), py::arg("eps") = kNormEps,
        "Cosine of matching rows of a and b (M, D); masked-out rows give 0.");
  m.def("pairwise_scores", &pairwise_scores_py, py::arg("a"), py::arg("b"),
        py::arg("metric") = "cosine",
        "Score matrix (M, N) of a (M, D) against b (N, D): ip, cosine or squared l2.");
}

}  // namespace seqlab::bind
