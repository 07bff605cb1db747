"""The Dagster UI as users see it: the webserver on the project's workspace, driven by
headless Debian Chromium through Playwright. Screenshots go to test-artifacts/ui/."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nids_devkit.broker import free_port
from tests.support.deployment import ROOT

ARTIFACTS = Path(os.environ.get("NIDS_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "ui"
GROUPS = ["ingestion", "cold_storage", "model", "serving"]
# Nearest-neighbour lineage of two assets covers every asset of the graph.
LINEAGE_VIEWS = {
    "hot_flows": [
        "flow_batch",
        "hot_flows",
        "consumer_offsets",
        "flow_predictions",
        "alerts",
        "cold_predictions",
    ],
    "gnn_model": ["cold_flows", "training_set", "gnn_model", "champion_model"],
}
GATE_CHECKS = [
    "gate_test_accuracy",
    "gate_macro_f1",
    "gate_benign_fpr",
    "gate_not_worse_than_champion",
    "gate_lono_vs_baseline",
    "gnn_vs_baseline",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Debian's chromium is not installed: `./dev setup` installs it (apt)")
    return path


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "NIDS_DUCKDB_PATH": str(home / "hot.duckdb"),
        "NIDS_COLD_URL": str(home / "cold"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "NIDS_MODEL_CACHE_DIR": str(home / "cache"),
    }
    log = open(home / "webserver.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            str(ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited: {(home / 'webserver.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("dagster-webserver did not start in 120 s")
    yield url
    os.killpg(proc.pid, 15)
    proc.wait(20)
    log.close()


@pytest.mark.slow
def test_lineage_and_asset_check_pages_render(webserver):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{webserver}/asset-groups", wait_until="networkidle")
        page.get_by_text("Global asset lineage").wait_for(timeout=60_000)
        skip = page.get_by_role("button", name="Skip")  # first-visit community dialog
        if skip.count():
            skip.click()
        # The global graph shows the four asset groups (collapsed, as it opens).
        for group in GROUPS:
            page.get_by_text(group, exact=True).filter(visible=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "global-lineage.png"), full_page=True)
        # Asset-level lineage graphs (nearest neighbours) show the assets themselves.
        for focus, names in LINEAGE_VIEWS.items():
            page.goto(
                f"{webserver}/assets/{focus}?view=lineage&lineageScope=neighbors&lineageDepth=2",
                wait_until="networkidle",
            )
            for name in names:
                page.get_by_text(name, exact=True).filter(visible=True).first.wait_for(
                    timeout=60_000
                )
            page.screenshot(path=str(ARTIFACTS / f"{focus}-lineage.png"), full_page=True)

        page.goto(f"{webserver}/assets/gnn_model?view=checks", wait_until="networkidle")
        for name in GATE_CHECKS:
            page.get_by_text(name, exact=True).filter(visible=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "gnn_model-checks.png"), full_page=True)

        page.goto(f"{webserver}/assets/hot_flows?view=checks", wait_until="networkidle")
        for name in ("hot_flows_accounting", "hot_flows_schema", "hot_flows_value_ranges"):
            page.get_by_text(name, exact=True).filter(visible=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "hot_flows-checks.png"), full_page=True)
        browser.close()
    for shot in (
        "global-lineage.png",
        "hot_flows-lineage.png",
        "gnn_model-lineage.png",
        "gnn_model-checks.png",
        "hot_flows-checks.png",
    ):
        assert (ARTIFACTS / shot).stat().st_size > 10_000
