"""The dashboard's shared helpers in Streamlit's AppTest: failures become messages, charts come with CSV."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _app(body: str) -> AppTest:
    return AppTest.from_string("from finpulse.dashboard.common import *\nimport pandas as pd\n" + body,
                               default_timeout=30).run()


def test_missing_data_is_an_empty_state_naming_the_command() -> None:
    at = _app("@safe\ndef page():\n    raise Missing('No curated data under /x', 'make demo')\npage()")
    assert not at.exception and [i.value for i in at.info] == ["No curated data under /x. Run `make demo` to fill it."]


def test_an_unreachable_service_is_a_warning_and_a_bug_an_error_line_without_traceback() -> None:
    at = _app("@safe\ndef a():\n    raise ConnectionError('prometheus at :9090')\n"
              "@safe\ndef b():\n    raise KeyError('col')\na()\nb()\nst.write('after')")
    assert not at.exception
    assert "prometheus at :9090" in at.warning[0].value
    assert at.error[0].value.startswith("Could not show this part (KeyError")
    assert at.markdown[-1].value == "after"  # the page goes on


def test_chart_has_a_csv_download_of_its_data() -> None:
    at = _app("import plotly.express as px\ndf = pd.DataFrame({'x': [1, 2], 'y': [3, 4]})\n"
              "chart(px.line(df, x='x', y='y'), df, 'demo')")
    assert len(at.get("plotly_chart")) == 1
    button = at.get("download_button")[0]
    assert button.proto.label == "Download CSV"
