import pytest

from scenario import Market


@pytest.fixture
def market() -> Market:
    """A fresh matcher, engine 7, with BTC-USD (tick 0.01, lot 0.001) and ETH-USD (tick 0.05, lot 0.01)."""
    return Market()
