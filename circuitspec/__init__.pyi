# The public names of circuitspec for type checkers; __init__.py imports them lazily (_LAZY).
from circuitspec.bridge.loading import load_model as load_model
from circuitspec.data.dataset import Dataset as Dataset
from circuitspec.output.diagram import render as render
from circuitspec.patching.api import path_patch as path_patch
from circuitspec.patching.types import Receiver as Receiver
from circuitspec.patching.types import Sender as Sender
from circuitspec.results import Result as Result
from circuitspec.spec.load import load_hypothesis as load_hypothesis
from circuitspec.verification.run import verify as verify
from circuitspec.verification.settings import Options as Options

__version__: str
__all__: list[str]
