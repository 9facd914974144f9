// CPU kernels for the networks' hidden layers, built by sorl_core/cpu.py.
//
// sorl_lab::gelu_tanh(z): tanh-approximate GELU in one pass, the value and, when asked, the slope dy/dz.
// ATen evaluates this GELU with tanh twice per activation, once forward and once in the backward
// (about 135 us for 256 x 512 bf16 values on two Zen 4 cores). Here one pass writes y and dy/dz
// together (about 50 us), so the backward is a single multiply.
//
// sorl_lab::gelu_layer_norm(z, scale, shift, eps): the critic's GELU -> LayerNorm -> per-member affine
// in one pass over each row, float32 inside, one rounding at the end (eager: three ops, three
// roundings in bf16, and as many again in the backward).
//
// sorl_lab::adam_step: Adam on float32 weights from the gradients of their bf16 working copies, writing
// the updated weights back into the copies (bf16 training, sorl_core/agent.py).
//
// The layer ops carry their autograd in C++: no Python on the training path.
//
// Identity used: 0.5 z (1 + tanh u) = z sigmoid(2u), u = sqrt(2/pi) (z + 0.044715 z^3);
// sigmoid needs one exp, where ATen's vectorised tanh is several times slower.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>
#include <tuple>
#include <type_traits>
#include <utility>

namespace {

using at::vec::Vectorized;
using fVec = Vectorized<float>;
using bVec = Vectorized<at::BFloat16>;

constexpr float kTwoC = 2.0f * 0.7978845608028654f;  // 2 sqrt(2/pi)
constexpr float kA = 0.044715f;
constexpr int64_t kGrain = 8192;  // values per task: below this one thread is faster

template <bool kSlope>
inline void gelu(const fVec& z, fVec& y, fVec& d) {
  const fVec one(1.f), two_c(kTwoC), a(kA), three_a(3.f * kA);
  const fVec z2 = z * z;
  const fVec s = one / (one + (two_c * z * (one + a * z2)).neg().exp_u20());
  y = z * s;
  if constexpr (kSlope) d = s + z * s * (one - s) * two_c * (one + three_a * z2);
}

template <bool kSlope>
inline void gelu(float z, float& y, float& d) {
  const float z2 = z * z, s = 1.f / (1.f + std::exp(-kTwoC * z * (1.f + kA * z2)));
  y = z * s;
  if constexpr (kSlope) d = s + z * s * (1.f - s) * kTwoC * (1.f + 3.f * kA * z2);
}

template <bool kSlope>
void gelu_span(const float* z, float* y, float* d, int64_t begin, int64_t end) {
  int64_t i = begin;
  fVec yv, dv;
  for (; i + fVec::size() <= end; i += fVec::size()) {
    gelu<kSlope>(fVec::loadu(z + i), yv, dv);
    yv.store(y + i);
    if constexpr (kSlope) dv.store(d + i);
  }
  float ys, ds;
  for (; i < end; ++i) {
    gelu<kSlope>(z[i], ys, ds);
    y[i] = ys;
    if constexpr (kSlope) d[i] = ds;
  }
}

template <bool kSlope>
void run_float(const float* z, float* y, float* d, int64_t n) {
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { gelu_span<kSlope>(z, y, d, begin, end); });
}

template <bool kSlope>
void run_bf16(const at::BFloat16* z, at::BFloat16* y, at::BFloat16* d, int64_t n) {
  // Arithmetic in float32, rounded to bf16 once at the store (as ATen's bf16 GELU does).
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    fVec y0, d0, y1, d1;
    for (; i + bVec::size() <= end; i += bVec::size()) {
      auto [z0, z1] = at::vec::convert_bfloat16_float(bVec::loadu(z + i));
      gelu<kSlope>(z0, y0, d0);
      gelu<kSlope>(z1, y1, d1);
      at::vec::convert_float_bfloat16(y0, y1).store(y + i);
      if constexpr (kSlope) at::vec::convert_float_bfloat16(d0, d1).store(d + i);
    }
    float ys, ds;
    for (; i < end; ++i) {
      gelu<kSlope>(static_cast<float>(z[i]), ys, ds);
      y[i] = ys;
      if constexpr (kSlope) d[i] = ds;
    }
  });
}

template <bool kSlope>
void dispatch(const at::Tensor& z, at::Tensor& y, at::Tensor& d) {
  const int64_t n = z.numel();
  if (z.scalar_type() == at::kBFloat16) {
    run_bf16<kSlope>(z.const_data_ptr<at::BFloat16>(), y.mutable_data_ptr<at::BFloat16>(),
                     kSlope ? d.mutable_data_ptr<at::BFloat16>() : nullptr, n);
  } else {
    run_float<kSlope>(z.const_data_ptr<float>(), y.mutable_data_ptr<float>(),
                      kSlope ? d.mutable_data_ptr<float>() : nullptr, n);
  }
}

void check(const at::Tensor& z) {
  TORCH_CHECK(z.device().is_cpu(), "sorl_lab::gelu_tanh runs on CPU tensors only");
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kBFloat16,
              "sorl_lab::gelu_tanh takes float32 or bfloat16, got ", z.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> value_and_slope(const at::Tensor& input) {
  check(input);
  const at::Tensor z = input.contiguous();
  at::Tensor y = at::empty_like(z), d = at::empty_like(z);
  dispatch<true>(z, y, d);
  return {y, d};
}

at::Tensor value(const at::Tensor& input) {
  check(input);
  const at::Tensor z = input.contiguous();
  at::Tensor y = at::empty_like(z), unused;
  dispatch<false>(z, y, unused);
  return y;
}

// The forward keeps dy/dz instead of z, so the backward is one multiply and never recomputes tanh.
class GeluTanh : public torch::autograd::Function<GeluTanh> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z) {
    auto [y, slope] = value_and_slope(z);
    ctx->save_for_backward({slope});
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return {grads[0] * ctx->get_saved_variables()[0]};
  }
};

at::Tensor gelu_tanh_autograd(const at::Tensor& z) {
  if (at::GradMode::is_enabled() && z.requires_grad()) return GeluTanh::apply(z);
  at::AutoDispatchBelowADInplaceOrView guard;  // no graph needed: the value alone, no slope
  return value(z);
}

// ------------------------------------------------------------------ GELU -> LayerNorm -> affine
// Rows of z (E, B, H) are normalised over H; row r belongs to ensemble member r / B, whose scale and
// shift are (E, 1, H) float32. Saved for the backward, in float32: xhat, the GELU slope, 1/std per row.

inline void to_float(const at::Tensor& t, int64_t offset, float* dst, int64_t n) {
  if (t.scalar_type() == at::kBFloat16) at::vec::convert(t.const_data_ptr<at::BFloat16>() + offset, dst, n);
  else std::copy_n(t.const_data_ptr<float>() + offset, n, dst);
}

inline void from_float(const float* src, at::Tensor& t, int64_t offset, int64_t n) {
  if (t.scalar_type() == at::kBFloat16) at::vec::convert(src, t.mutable_data_ptr<at::BFloat16>() + offset, n);
  else std::copy_n(src, n, t.mutable_data_ptr<float>() + offset);
}

inline float sum(const float* x, int64_t n) {
  return at::vec::reduce_all<float>([](fVec& a, fVec& b) { return a + b; }, x, n);
}

inline float add_lanes(const fVec& v) {
  return at::vec::vec_reduce_all<float>([](fVec& a, fVec& b) { return a + b; }, v);
}

inline float sum_sq_dev(const float* x, float mean, int64_t n) {
  fVec acc(0.f);
  const fVec m(mean);
  int64_t i = 0;
  for (; i + fVec::size() <= n; i += fVec::size()) {
    const fVec dev = fVec::loadu(x + i) - m;
    acc = at::vec::fmadd(dev, dev, acc);
  }
  float s = add_lanes(acc);
  for (; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  return s;
}

inline std::pair<float, float> sums_of_dxhat(const float* dout, const float* scale, const float* xhat, int64_t n) {
  fVec a1(0.f), a2(0.f);
  int64_t i = 0;
  for (; i + fVec::size() <= n; i += fVec::size()) {
    const fVec dx = fVec::loadu(dout + i) * fVec::loadu(scale + i);
    a1 = a1 + dx;
    a2 = at::vec::fmadd(dx, fVec::loadu(xhat + i), a2);
  }
  float s1 = add_lanes(a1), s2 = add_lanes(a2);
  for (; i < n; ++i) {
    s1 += dout[i] * scale[i];
    s2 += dout[i] * scale[i] * xhat[i];
  }
  return {s1, s2};
}

struct LayerNormSaved {
  at::Tensor xhat, slope, rstd;
};

// save: keep what the backward needs (skipped without autograd: the target critic, sampling).
std::tuple<at::Tensor, LayerNormSaved> gelu_layer_norm_forward(const at::Tensor& input, const at::Tensor& scale,
                                                               const at::Tensor& shift, double eps, bool save) {
  check(input);
  TORCH_CHECK(input.dim() == 3 && scale.scalar_type() == at::kFloat && shift.scalar_type() == at::kFloat &&
                  scale.numel() == input.size(0) * input.size(2) && shift.numel() == scale.numel(),
              "sorl_lab::gelu_layer_norm: z (E, B, H) with float32 scale and shift of E * H values");
  const at::Tensor z = input.contiguous(), g = scale.contiguous(), b = shift.contiguous();
  const int64_t rows = z.size(0) * z.size(1), per_member = z.size(1), h = z.size(2);
  at::Tensor out = at::empty_like(z);
  LayerNormSaved saved;
  const auto f32 = z.options().dtype(at::kFloat);
  if (save) saved = {at::empty(z.sizes(), f32), at::empty(z.sizes(), f32), at::empty({rows}, f32)};
  float* rstd = save ? saved.rstd.mutable_data_ptr<float>() : nullptr;
  const float *gp = g.const_data_ptr<float>(), *bp = b.const_data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / h), [&](int64_t begin, int64_t end) {
    // The GELU values live in a scratch row (in L1) until normalised: the saved tensors, fresh memory
    // each call, are then written once each instead of written, read twice and rewritten.
    std::vector<float> row(h), x(h), ds(h);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t off = r * h;
      float* d = save ? saved.slope.mutable_data_ptr<float>() + off : ds.data();
      float* xhat = save ? saved.xhat.mutable_data_ptr<float>() + off : x.data();
      const float *gr = gp + (r / per_member) * h, *br = bp + (r / per_member) * h;
      to_float(z, off, row.data(), h);
      if (save) gelu_span<true>(row.data(), x.data(), d, 0, h);  // x <- GELU(z), d <- its slope
      else gelu_span<false>(row.data(), x.data(), d, 0, h);
      const float mean = sum(x.data(), h) / h;
      const float inv = 1.f / std::sqrt(sum_sq_dev(x.data(), mean, h) / h + static_cast<float>(eps));
      if (save) rstd[r] = inv;
      int64_t i = 0;
      const fVec mean_v(mean), inv_v(inv);
      for (; i + fVec::size() <= h; i += fVec::size()) {
        const fVec xv = (fVec::loadu(x.data() + i) - mean_v) * inv_v;
        xv.store(xhat + i);
        at::vec::fmadd(xv, fVec::loadu(gr + i), fVec::loadu(br + i)).store(row.data() + i);
      }
      for (; i < h; ++i) {
        xhat[i] = (x[i] - mean) * inv;
        row[i] = xhat[i] * gr[i] + br[i];
      }
      from_float(row.data(), out, off, h);
    }
  });
  return {out, saved};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gelu_layer_norm_backward(const at::Tensor& grad_out, const LayerNormSaved& saved,
                                                                        const at::Tensor& scale) {
  const at::Tensor dout = grad_out.contiguous(), g = scale.contiguous();
  const int64_t members = saved.xhat.size(0), per_member = saved.xhat.size(1), h = saved.xhat.size(2);
  const int64_t rows = members * per_member, threads = at::get_num_threads();
  at::Tensor dz = at::empty(saved.xhat.sizes(), dout.options());
  // d scale = sum over the batch of dout * xhat, d shift = sum of dout: each thread sums its own rows
  // into its own slice, added up at the end (one pass over the rows, no second read).
  at::Tensor partial = at::zeros({threads, 2, members, h}, saved.rstd.options());
  const float *xhat = saved.xhat.const_data_ptr<float>(), *slope = saved.slope.const_data_ptr<float>();
  const float *rstd = saved.rstd.const_data_ptr<float>(), *gp = g.const_data_ptr<float>();
  float* part = partial.mutable_data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / h), [&](int64_t begin, int64_t end) {
    std::vector<float> d(h), row(h);
    const int64_t tid = at::get_thread_num();
    for (int64_t r = begin; r < end; ++r) {
      const int64_t off = r * h, e = r / per_member;
      const float *x = xhat + off, *gr = gp + e * h, *sl = slope + off;
      float* dscale = part + ((tid * 2) * members + e) * h;
      float* dshift = part + ((tid * 2 + 1) * members + e) * h;
      to_float(dout, off, d.data(), h);
      auto [s1, s2] = sums_of_dxhat(d.data(), gr, x, h);  // dxhat = dout * scale: sum and sum of dxhat * xhat
      s1 /= h;
      s2 /= h;
      const float inv = rstd[r];
      int64_t i = 0;
      const fVec inv_v(inv), s1_v(s1), s2_v(s2);
      for (; i + fVec::size() <= h; i += fVec::size()) {
        const fVec dv = fVec::loadu(d.data() + i), xv = fVec::loadu(x + i);
        (inv_v * (dv * fVec::loadu(gr + i) - s1_v - xv * s2_v) * fVec::loadu(sl + i)).store(row.data() + i);
        at::vec::fmadd(dv, xv, fVec::loadu(dscale + i)).store(dscale + i);
        (fVec::loadu(dshift + i) + dv).store(dshift + i);
      }
      for (; i < h; ++i) {
        row[i] = inv * (d[i] * gr[i] - s1 - x[i] * s2) * sl[i];
        dscale[i] += d[i] * x[i];
        dshift[i] += d[i];
      }
      from_float(row.data(), dz, off, h);
    }
  });
  at::Tensor sums = partial.sum(0);  // (2, E, H)
  return {dz, sums[0].unsqueeze(1), sums[1].unsqueeze(1)};
}

class GeluLayerNorm : public torch::autograd::Function<GeluLayerNorm> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z, const at::Tensor& scale,
                            const at::Tensor& shift, double eps) {
    auto [out, saved] = gelu_layer_norm_forward(z, scale, shift, eps, true);
    ctx->save_for_backward({saved.xhat, saved.slope, saved.rstd, scale});
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    auto [dz, dscale, dshift] = gelu_layer_norm_backward(grads[0], LayerNormSaved{s[0], s[1], s[2]}, s[3]);
    return {dz, dscale.view(s[3].sizes()), dshift.view(s[3].sizes()), at::Tensor()};
  }
};

at::Tensor gelu_layer_norm_value(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift, double eps) {
  return std::get<0>(gelu_layer_norm_forward(z, scale, shift, eps, false));
}

at::Tensor gelu_layer_norm_autograd(const at::Tensor& z, const at::Tensor& scale, const at::Tensor& shift, double eps) {
  if (at::GradMode::is_enabled() && (z.requires_grad() || scale.requires_grad() || shift.requires_grad()))
    return GeluLayerNorm::apply(z, scale, shift, eps);
  at::AutoDispatchBelowADInplaceOrView guard;
  return gelu_layer_norm_value(z, scale, shift, eps);
}

// ------------------------------------------------------------------ Adam from bf16 working copies
// torch.optim.Adam's update (no weight decay, no amsgrad) of float32 weights, reading the gradient of a
// bf16 working copy (none: zero) and writing the new weight back into that copy, one pass per tensor.
// Eager, the same step is five passes: cast the gradient to float32, Adam (which also writes the
// unscaled gradient back), and a second cast of the weight into the copy.

template <typename G>
inline void adam_span(float* p, float* m, float* v, const G* g, at::BFloat16* copy, int64_t begin, int64_t end,
                      float inv_scale, float b1, float b2, float step_size, float bc2_sqrt, float eps) {
  const fVec vb1(b1), vb1c(1.f - b1), vb2(b2), vb2c(1.f - b2), vstep(step_size), vbc2(bc2_sqrt), veps(eps), vinv(inv_scale);
  auto update = [&](const fVec& gv, int64_t i) {
    const fVec gs = gv * vinv;
    const fVec mv = fVec::loadu(m + i) * vb1 + gs * vb1c;
    const fVec vv = fVec::loadu(v + i) * vb2 + gs * gs * vb2c;
    const fVec pv = fVec::loadu(p + i) - vstep * mv / (vv.sqrt() / vbc2 + veps);
    mv.store(m + i);
    vv.store(v + i);
    pv.store(p + i);
    return pv;
  };
  int64_t i = begin;
  for (; i + bVec::size() <= end; i += bVec::size()) {
    fVec g0(0.f), g1(0.f);
    if constexpr (std::is_same_v<G, at::BFloat16>) {
      if (g) std::tie(g0, g1) = at::vec::convert_bfloat16_float(bVec::loadu(g + i));
    } else if (g) {
      g0 = fVec::loadu(g + i);
      g1 = fVec::loadu(g + i + fVec::size());
    }
    const fVec p0 = update(g0, i), p1 = update(g1, i + fVec::size());
    if (copy) at::vec::convert_float_bfloat16(p0, p1).store(copy + i);
  }
  for (; i < end; ++i) {
    const float gs = g ? static_cast<float>(g[i]) * inv_scale : 0.f;
    m[i] = m[i] * b1 + gs * (1.f - b1);
    v[i] = v[i] * b2 + gs * gs * (1.f - b2);
    p[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
    if (copy) copy[i] = p[i];
  }
}

void adam_step(at::TensorList params, const c10::List<std::optional<at::Tensor>>& grads, at::TensorList exp_avgs,
               at::TensorList exp_avg_sqs, const c10::List<std::optional<at::Tensor>>& copies, double lr, double beta1,
               double beta2, double eps, double step, double grad_scale) {
  const int64_t count = static_cast<int64_t>(params.size());
  TORCH_CHECK(grads.size() == params.size() && exp_avgs.size() == params.size() && exp_avg_sqs.size() == params.size() &&
                  copies.size() == params.size(), "sorl_lab::adam_step: one gradient, state and copy slot per weight");
  const float step_size = static_cast<float>(lr / (1.0 - std::pow(beta1, step)));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)));
  for (int64_t t = 0; t < count; ++t) {
    const at::Tensor& p = params[t];
    const std::optional<at::Tensor> g = grads[t], c = copies[t];
    TORCH_CHECK(p.is_contiguous() && p.scalar_type() == at::kFloat && exp_avgs[t].is_contiguous() && exp_avg_sqs[t].is_contiguous(),
                "sorl_lab::adam_step: contiguous float32 weights and state");
    TORCH_CHECK(!g || (g->is_contiguous() && g->numel() == p.numel() &&
                       (g->scalar_type() == at::kBFloat16 || g->scalar_type() == at::kFloat)),
                "sorl_lab::adam_step: gradients must be contiguous bf16 or float32 of the weight's size");
    TORCH_CHECK(!c || (c->is_contiguous() && c->numel() == p.numel() && c->scalar_type() == at::kBFloat16),
                "sorl_lab::adam_step: copies must be contiguous bf16 of the weight's size");
    float *pp = p.data_ptr<float>(), *mp = exp_avgs[t].data_ptr<float>(), *vp = exp_avg_sqs[t].data_ptr<float>();
    at::BFloat16* cp = c ? c->data_ptr<at::BFloat16>() : nullptr;
    const bool bf16_grad = !g || g->scalar_type() == at::kBFloat16;
    const at::BFloat16* gb = (g && bf16_grad) ? g->const_data_ptr<at::BFloat16>() : nullptr;
    const float* gf = (g && !bf16_grad) ? g->const_data_ptr<float>() : nullptr;
    at::parallel_for(0, p.numel(), 2 * kGrain, [&](int64_t begin, int64_t end) {
      if (bf16_grad)
        adam_span(pp, mp, vp, gb, cp, begin, end, 1.f / grad_scale, beta1, beta2, step_size, bc2_sqrt, eps);
      else
        adam_span(pp, mp, vp, gf, cp, begin, end, 1.f / grad_scale, beta1, beta2, step_size, bc2_sqrt, eps);
    });
  }
}

}  // namespace

TORCH_LIBRARY(sorl_lab, m) {
  m.def("gelu_tanh(Tensor z) -> Tensor");
  m.def("gelu_layer_norm(Tensor z, Tensor scale, Tensor shift, float eps) -> Tensor");
  m.def("adam_step(Tensor(a!)[] params, Tensor?[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor?[] copies, float lr, float beta1, float beta2, float eps, float step, float grad_scale) -> ()");
}
TORCH_LIBRARY_IMPL(sorl_lab, CPU, m) {
  m.impl("gelu_tanh", value);
  m.impl("gelu_layer_norm", gelu_layer_norm_value);
  m.impl("adam_step", adam_step);
}
TORCH_LIBRARY_IMPL(sorl_lab, Autograd, m) {
  m.impl("gelu_tanh", gelu_tanh_autograd);
  m.impl("gelu_layer_norm", gelu_layer_norm_autograd);
}
