"""The suite's OCF framework: declarations, environment, logging, meta-data and dispatch."""

from xenha.ocf.agent import Agent, AgentSpec, Context, Handler, run_agent
from xenha.ocf.codes import OcfError, OcfExit
from xenha.ocf.metadata import Action
from xenha.ocf.parameters import Parameter, ParameterValues, ParamType

__all__ = [
    "Action",
    "Agent",
    "AgentSpec",
    "Context",
    "Handler",
    "OcfError",
    "OcfExit",
    "ParamType",
    "Parameter",
    "ParameterValues",
    "run_agent",
]
