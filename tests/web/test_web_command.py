"""`exchange web` refuses, with one clear line, a config it cannot serve."""

from __future__ import annotations

from click.testing import CliRunner

from exchange.cli.main import cli
from exchange.testing.mesh import loopback_config


def run_web(path) -> str:
    result = CliRunner().invoke(cli, ["web", "--config", str(path)])
    assert result.exit_code == 1
    return result.output


def test_a_config_without_a_web_section_is_refused(tmp_path):
    output = run_web(loopback_config(tmp_path))
    assert output == ("Error: the config has no `web:` section; add one (listen: 127.0.0.1:8080) to run the"
                      " web role\n")


def test_a_gateway_without_an_endpoint_for_front_ends_is_refused(tmp_path):
    path = loopback_config(tmp_path, web=True)
    text = path.read_text()
    start = text.index("  front_end: ")
    path.write_text(text[:start] + text[text.index("\n", start) + 1:])
    assert run_web(path) == (f"Error: {path}: the web role signs browsers in through the gateway's endpoint for"
                             " front ends; add one (front_end: tcp://127.0.0.1:7015, say) - at `$.gateway.front_end`\n")
