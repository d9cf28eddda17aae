"""Several host processes on one store: each answers with what all of them committed."""

from __future__ import annotations

import threading

from tests.integration.conftest import Delivery
from tests.support.host import HostProcess


def test_right_after_both_queued_each_host_reports_the_total(delivery: Delivery) -> None:
    # Signed out: nothing is delivered, so pending only grows.
    first = delivery.start(sign_in=False)
    second = delivery.start(sign_in=False)
    hosts = (first, second)
    total = 0
    for round_ in range(10):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def queue(host: HostProcess, name: str, round_: int = round_,
                  barrier: threading.Barrier = barrier, errors: list[BaseException] = errors,
                  ) -> None:
            try:
                barrier.wait(10)
                urls = [f"https://shared.example/{round_}/{name}/{i}" for i in range(50)]
                assert host.request("flattr", urls=urls)["result"] == {"queued": 50}
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=queue, args=(h, n)) for h, n in zip(
            hosts, ("a", "b"), strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        total += 100
        reports = [host.request("get-state")["result"]["queue"]["pending"] for host in hosts]
        hello = [host.request("hello", extension={"id": "x", "version": "1", "build": "t"})
                 ["result"]["state"]["queue"]["pending"] for host in hosts]
        assert reports == [total, total], f"round {round_}"
        assert hello == [total, total], f"round {round_}"
