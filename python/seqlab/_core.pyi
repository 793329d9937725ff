# Type stub of the compiled kernel module (pybind11, cpp/bindings/). The bindings check
# every argument's shape and dtype at run time; to a type checker its names are Any.
from typing import Any

def __getattr__(name: str) -> Any: ...
