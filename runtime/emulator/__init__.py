"""Local, protocol-faithful emulator of the Assistants, Responses and Conversations APIs, with a
scripted model, fault injection and bounded (LRU) retention of what it stores."""

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
