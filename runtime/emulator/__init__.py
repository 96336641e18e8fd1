"""Local, protocol-faithful Assistants API emulator with a scripted model and fault injection."""

from runtime.emulator.faults import Fault, FaultSpec, FaultSpecError
from runtime.emulator.model import ModelInput, ScriptedModel, Turn
from runtime.emulator.scenario import Scenario, ScenarioError
from runtime.emulator.server import Emulator, EmulatorError

__all__ = [
    "Emulator",
    "EmulatorError",
    "Fault",
    "FaultSpec",
    "FaultSpecError",
    "ModelInput",
    "Scenario",
    "ScenarioError",
    "ScriptedModel",
    "Turn",
]
