"""`GET /api/v1/kernels` on a real gateway: every kernel the gateway accepts, its params as
native/signatures.py declares them, and each kernel's example params run on a real agent."""

from __future__ import annotations

from gateway.compute import VALIDATORS
from tests.gateway.conftest import conforms
from tests.support.gateway import GatewaySite, gateway_process


def test_the_kernel_list_and_its_examples_run_on_the_fleet(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gw.site.agent(), gateway_process(gw):
        viewer, webapp = gw.token("viewer"), gw.token("webapp")
        assert gw.call("GET", "/api/v1/kernels")[0] == 401
        status, body, _ = gw.call("GET", "/api/v1/kernels", token=viewer)
        assert status == 200 and {k["name"] for k in body["kernels"]} == set(VALIDATORS)
        conforms("Kernels", body)
        mm = next(k for k in body["kernels"] if k["name"] == "matrix_multiply")
        assert [(p["name"], p["kind"], p["required"], p["ndim"]) for p in mm["params"]] == [
            ("matrix_a", "ndarray", True, 2),
            ("matrix_b", "ndarray", True, 2),
        ]
        bins = next(
            p for k in body["kernels"] if k["name"] == "histogram" for p in k["params"] if p["name"] == "bins"
        )
        assert {
            "kind": "int",
            "required": False,
            "minimum": 1,
            "maximum": 65536,
            "default": 10,
        }.items() <= bins.items()
        for kernel in body["kernels"]:  # a form filled with the examples is a task the fleet runs
            params = {p["name"]: p["example"] for p in kernel["params"]}
            request = {"algorithm": kernel["name"], "parameters": params}
            status, done, _ = gw.call("POST", "/api/v1/compute?wait=20", request, token=webapp)
            assert (status, done["status"]) == (200, "completed"), (kernel["name"], done)
