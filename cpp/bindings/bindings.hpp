// Each binding file registers one concept's functions on the seqlab._core module.
#pragma once
#include <pybind11/pybind11.h>

namespace seqlab::bind {
void bind_cpu_dispatch(pybind11::module_& m);
void bind_threads(pybind11::module_& m);
void bind_linear(pybind11::module_& m);
void bind_embedding(pybind11::module_& m);
void bind_activations(pybind11::module_& m);
void bind_softmax(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
void bind_clip(pybind11::module_& m);
void bind_recurrent(pybind11::module_& m);
void bind_conv1d(pybind11::module_& m);
void bind_retrieval(pybind11::module_& m);
void bind_decoder(pybind11::module_& m);
void bind_losses(pybind11::module_& m);
void bind_attention(pybind11::module_& m);
void bind_gpt_decode(pybind11::module_& m);
void bind_layer_norm(pybind11::module_& m);
void bind_cross_entropy(pybind11::module_& m);
void bind_linear_cross_entropy(pybind11::module_& m);
void bind_pointer_generator(pybind11::module_& m);
}  // namespace seqlab::bind
