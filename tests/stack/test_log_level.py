"""CUBE_LOG_LEVEL: the services' log level, which a CVM's deployment settings (bound by HOST_DATA) fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cube_stack.log_level import configure_logging
from cube_stack.proxy.standalone import main as proxy_main
from cube_wire.errors import CubeError


@pytest.mark.parametrize(("value", "level"), [("", 20), ("debug", 10), ("WARNING", 30), ("error", 40)])
def test_each_level_of_the_deployment_settings_sets_the_root_logger(value: str, level: int) -> None:
    code = (
        "import logging, sys; from cube_stack.log_level import configure_logging\n"
        f"configure_logging({{'CUBE_LOG_LEVEL': {value!r}}}); print(logging.getLogger().level)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(level)


def test_an_unknown_level_is_refused_naming_the_variable() -> None:
    with pytest.raises(CubeError, match="CUBE_LOG_LEVEL"):
        configure_logging({"CUBE_LOG_LEVEL": "trace"})


def test_the_proxy_exits_2_on_an_unknown_level(capsys: pytest.CaptureFixture[str]) -> None:
    assert proxy_main({"CUBE_LOG_LEVEL": "loud"}) == 2
    assert "CUBE_LOG_LEVEL" in capsys.readouterr().err
