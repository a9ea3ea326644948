"""TFLite export with a built-in check in the LiteRT interpreter.

`export_tflite` strips a fair-pruned model, converts it (sparse tensors with
`EXPERIMENTAL_SPARSITY`), runs the flatbuffer in the LiteRT interpreter on sample
inputs and only then writes the file. What TFLite cannot run is never written:
quantized + unstructured-sparse models fail to prepare under the default XNNPACK
delegate (checked on TF 2.21), so such an export falls back to a dense quantized
file with a warning, and any other failure raises.

The steps are public for measuring files without writing them (the benchmarks do):
`convert` (Keras model -> flatbuffer, unchecked), `run_tflite` (flatbuffer vs Keras on
samples), `interpreter_class` (LiteRT's interpreter, or tf.lite's) and `dense_stored`
(what a file stores dense although it holds zeros).

Modules, one concern each: `pipeline` (`export_tflite`: the steps in order),
`arguments` (its argument checks), `conversion` (Keras -> flatbuffer), `flatbuffer_info`
(what a flatbuffer holds, parsed once), `surgery` (storing chosen tensors dense),
`verify` (the check against Keras), `atomic_write` and `result` (`TFLiteExport`).
"""

from tf_fairprune.export.arguments import QUANTIZE_MODES
from tf_fairprune.export.arguments import RNN_MODES
from tf_fairprune.export.arguments import TARGETS
from tf_fairprune.export.conversion import computes_in_float16
from tf_fairprune.export.conversion import convert
from tf_fairprune.export.flatbuffer_info import dense_stored
from tf_fairprune.export.flatbuffer_info import FlatbufferInfo
from tf_fairprune.export.pipeline import export_tflite
from tf_fairprune.export.result import TFLiteExport
from tf_fairprune.export.verify import Comparison
from tf_fairprune.export.verify import interpreter_class
from tf_fairprune.export.verify import run_tflite
