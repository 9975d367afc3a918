"""A dead endpoint is one clear error naming it, and the clients' retries are bounded by settings."""

from __future__ import annotations

import socket

import pyarrow.fs as pafs
import pytest

from finpulse import outages, storage, tracking
from finpulse.config import Settings
from tests.support.servers import free_port


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_answers_tells_a_listening_port_from_a_dead_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as live:
        assert outages.answers(f"http://127.0.0.1:{live.getsockname()[1]}")
    assert not outages.answers(_dead_url())


def test_a_failure_while_the_endpoint_is_dead_becomes_one_line_naming_it() -> None:
    url = _dead_url()
    with pytest.raises(outages.ServiceUnreachable) as info, \
            outages.reaching("S3 endpoint", url, lambda: "running the ETL (stages done: prices)"):
        try:
            raise OSError("AWS Error NETWORK_CONNECTION during GetObject\nTo change retry attempts ...")
        except OSError as inner:
            raise RuntimeError("Traceback (most recent call last):\n  File ...\nwrapped") from inner
    err = info.value
    assert str(err) == (f"S3 endpoint {url} unreachable while running the ETL (stages done: prices) "
                        "(OSError: AWS Error NETWORK_CONNECTION during GetObject)")  # the innermost cause's message
    assert (err.service, err.endpoint) == ("S3 endpoint", url) and isinstance(err, ConnectionError)


def test_failures_with_the_endpoint_alive_or_local_pass_unchanged() -> None:
    with socket.create_server(("127.0.0.1", 0)) as live:
        url = f"http://127.0.0.1:{live.getsockname()[1]}"
        with pytest.raises(KeyError), outages.reaching("S3 endpoint", url, "x"):
            raise KeyError("a bug, not an outage")
    with pytest.raises(KeyError), outages.reaching("S3 endpoint", None, "x"):  # a local path: never probed
        raise KeyError("local")


def test_reaching_proxy_wraps_every_call() -> None:
    class Client:
        name = "c"

        def get(self, key: str) -> str:
            raise OSError(f"refused {key}")

    proxy = outages.Reaching(Client(), "MLflow tracking server", _dead_url())
    assert proxy.name == "c"
    with pytest.raises(outages.ServiceUnreachable, match=r"MLflow tracking server .* while calling get \(OSError: refused k\)"):
        proxy.get("k")


def test_s3_and_mlflow_retries_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(s3_endpoint_url="http://127.0.0.1:9", s3_max_attempts=2, s3_connect_timeout_s=0.5,
                 mlflow_http_max_retries=1, mlflow_http_backoff_factor=0, mlflow_http_timeout_s=7)
    opts = storage.s3_options(s)
    assert opts["connect_timeout"] == 0.5 and isinstance(opts["retry_strategy"], pafs.AwsStandardS3RetryStrategy)
    pafs.S3FileSystem(**opts)  # pyarrow accepts them
    assert storage.s3_endpoint(s) == "http://127.0.0.1:9"
    for var in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    assert storage.s3_endpoint(Settings(s3_endpoint_url=None, s3_region="eu-west-1")) == "https://s3.eu-west-1.amazonaws.com"
    env = storage.worker_env(s)  # Ray tasks get the same bounds, and only what differs from the defaults
    assert env["FINPULSE_S3_MAX_ATTEMPTS"] == "2" and env["FINPULSE_S3_CONNECT_TIMEOUT_S"] == "0.5"
    assert "FINPULSE_S3_MAX_ATTEMPTS" not in storage.worker_env(Settings(s3_endpoint_url="http://x:1"))
    assert tracking.http_limits(s) == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
                                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "7"}


def test_the_cli_prints_an_outage_as_one_line_and_exit_code_3(capsys: pytest.CaptureFixture[str]) -> None:
    from finpulse.cli._app import OUTAGE_EXIT_CODE, FinPulseApp

    app = FinPulseApp()

    @app.command()
    def etl() -> None:
        with outages.reaching("S3 endpoint", "http://127.0.0.1:1", "running the ETL"):
            raise OSError("curlCode: 7, Could not connect to server")

    @app.command()
    def other() -> None:
        pass

    with pytest.raises(SystemExit) as info:
        app(["etl"])
    assert info.value.code == OUTAGE_EXIT_CODE
    err = capsys.readouterr().err
    assert err == "error: S3 endpoint http://127.0.0.1:1 unreachable while running the ETL (OSError: curlCode: 7, " \
                  "Could not connect to server)\n"


def test_nested_blocks_say_both_what_was_being_done() -> None:
    url = _dead_url()
    with pytest.raises(outages.ServiceUnreachable) as info, outages.reaching("MLflow", url, "registering m"), \
            outages.reaching("MLflow", url, "calling get_model_version"):
        raise OSError("refused")
    assert str(info.value) == f"MLflow {url} unreachable while registering m: calling get_model_version (OSError: refused)"
