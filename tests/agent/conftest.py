from tests.agent.agent_testlib import collector, tmp

__all__ = ["collector", "tmp"]
