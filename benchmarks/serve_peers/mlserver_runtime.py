"""MLServer custom runtime serving the penguins SavedModel: an MLModel subclass with load() and
predict(), as MLServer's custom-runtime guide has it; the request is the V2 inference protocol,
one named input per feature column, decoded with the Pandas codec (mlserver start DIR).
Request: POST /v2/models/penguins/infer."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mlserver import MLModel  # noqa: E402
from mlserver.codecs import NumpyCodec, PandasCodec, StringCodec  # noqa: E402
from mlserver.types import InferenceRequest, InferenceResponse  # noqa: E402
from penguin_model import SavedModel  # noqa: E402


class Penguins(MLModel):
    async def load(self) -> bool:
        self.model = SavedModel(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        frame = PandasCodec.decode_request(payload)
        outputs = self.model.predict_columns({name: frame[name].tolist() for name in self.model.inputs})
        encoded = []
        for name, values in outputs.items():
            if values.dtype.kind in "OS":
                encoded.append(StringCodec.encode_output(name, [v.decode() for v in values.ravel().tolist()]))
            else:
                encoded.append(NumpyCodec.encode_output(name, values))
        return InferenceResponse(model_name=self.name, outputs=encoded)
