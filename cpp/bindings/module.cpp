// seqlab._core: the pybind11 module. Each bind_* function lives in its own file.
#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "seqlab C++ kernels (forward/backward pairs over float32 numpy arrays)";
  seqlab::bind::bind_cpu_dispatch(m);
  seqlab::bind::bind_threads(m);
  seqlab::bind::bind_linear(m);
  seqlab::bind::bind_embedding(m);
  seqlab::bind::bind_activations(m);
  seqlab::bind::bind_softmax(m);
  seqlab::bind::bind_optim(m);
  seqlab::bind::bind_clip(m);
  seqlab::bind::bind_recurrent(m);
  seqlab::bind::bind_conv1d(m);
  seqlab::bind::bind_retrieval(m);
  seqlab::bind::bind_decoder(m);
  seqlab::bind::bind_losses(m);
  seqlab::bind::bind_attention(m);
  seqlab::bind::bind_gpt_decode(m);
  seqlab::bind::bind_layer_norm(m);
  seqlab::bind::bind_cross_entropy(m);
  seqlab::bind::bind_linear_cross_entropy(m);
  seqlab::bind::bind_pointer_generator(m);
}
