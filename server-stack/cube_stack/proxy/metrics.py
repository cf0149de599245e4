"""Prometheus metrics of one proxy app, rendered in the text exposition format (version 0.0.4).

Deliberately small and dependency-free: three families are all the proxy needs, and keeping them on the
app (not in a process-global registry) lets tests run many apps side by side. Labels are route
*templates*, methods and statuses only, so the label space is bounded and holds no user data::

    cube_proxy_requests_total{route,method,status}          counter
    cube_proxy_request_duration_seconds{route}              histogram (whole response, streams included)
    cube_proxy_upstream_first_byte_seconds{route}           histogram (runtime response headers)
    cube_proxy_streams_in_flight                            gauge
    cube_proxy_auth_cache_total{result="hit"|"miss"}        counter
    cube_proxy_connections_open                             gauge   (when served by ProxyServer)
    cube_proxy_connections_closed_total{reason}             counter (refused or timed out before serving)
    cube_proxy_accept_errors_total                          counter (EMFILE and the like, backed off)
    cube_proxy_shared_limits_up                             gauge   (1: Redis decides; 0: per process)
    cube_proxy_shared_limits_fallback_total                 counter (decided per process: Redis down)
    cube_proxy_shared_limits_round_trips_total              counter (token-bucket calls Redis answered)
    cube_proxy_shared_limits_outages_total                  counter (times Redis was lost)

The ``shared_limits`` families appear only when ``CUBE_PROXY_REDIS_URL`` is set.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

from cube_stack.proxy.shared_limits import SharedLimitsStats
from cube_stack.serving import CLOSE_REASONS, ServingStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FIRST_BYTE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += 1
        self.sum += value


class ProxyMetrics:
    """The proxy's counters, histograms and gauge; :meth:`render` produces the ``/metrics`` body."""

    def __init__(self, *, cache_counts: Callable[[], tuple[int, int]] | None = None) -> None:
        self._requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self._durations: dict[str, _Histogram] = {}
        self._first_byte: dict[str, _Histogram] = {}
        self.streams_in_flight = 0
        self._cache_counts = cache_counts
        self.connections: ServingStats | None = None  # set by the server that serves the app
        self.shared_limits: SharedLimitsStats | None = None  # set when limits are shared through Redis

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and its duration."""
        self._requests[(route, method, str(status))] += 1
        self._durations.setdefault(route, _Histogram(REQUEST_BUCKETS)).observe(seconds)

    def observe_first_byte(self, route: str, seconds: float) -> None:
        """Record how long the runtime took to send response headers."""
        self._first_byte.setdefault(route, _Histogram(FIRST_BYTE_BUCKETS)).observe(seconds)

    def stream_started(self) -> None:
        """Count a streaming response as in flight."""
        self.streams_in_flight += 1

    def stream_ended(self) -> None:
        """Count a streaming response as finished."""
        self.streams_in_flight -= 1

    def render(self) -> str:
        """Return every family in the Prometheus text format."""
        lines = [
            "# HELP cube_proxy_requests_total Requests handled, by route template, method and status.",
            "# TYPE cube_proxy_requests_total counter",
        ]
        for (route, method, status), count in sorted(self._requests.items()):
            labels = _labels(("route", "method", "status"), (route, method, status))
            lines.append(f"cube_proxy_requests_total{labels} {count}")
        self._render_histograms(
            lines,
            "cube_proxy_request_duration_seconds",
            "Seconds from request to the end of the response, streams included.",
            self._durations,
        )
        self._render_histograms(
            lines,
            "cube_proxy_upstream_first_byte_seconds",
            "Seconds until the model runtime sent its response headers.",
            self._first_byte,
        )
        lines += [
            "# HELP cube_proxy_streams_in_flight Streaming responses being relayed now.",
            "# TYPE cube_proxy_streams_in_flight gauge",
            f"cube_proxy_streams_in_flight {self.streams_in_flight}",
        ]
        if self._cache_counts is not None:
            hits, misses = self._cache_counts()
            lines += [
                "# HELP cube_proxy_auth_cache_total Authorization decision cache lookups.",
                "# TYPE cube_proxy_auth_cache_total counter",
                f'cube_proxy_auth_cache_total{{result="hit"}} {hits}',
                f'cube_proxy_auth_cache_total{{result="miss"}} {misses}',
            ]
        if self.connections is not None:
            self._render_connections(lines, self.connections)
        if self.shared_limits is not None:
            self._render_shared_limits(lines, self.shared_limits)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _render_connections(lines: list[str], stats: ServingStats) -> None:
        lines += [
            "# HELP cube_proxy_connections_open Client connections open now, TLS handshakes included.",
            "# TYPE cube_proxy_connections_open gauge",
            f"cube_proxy_connections_open {stats.open}",
            "# HELP cube_proxy_connections_closed_total Connections closed before serving, by reason.",
            "# TYPE cube_proxy_connections_closed_total counter",
        ]
        for reason in CLOSE_REASONS:
            lines.append(f'cube_proxy_connections_closed_total{{reason="{reason}"}} {stats.closed[reason]}')
        lines += [
            "# HELP cube_proxy_accept_errors_total Failed accept() calls (out of descriptors or memory).",
            "# TYPE cube_proxy_accept_errors_total counter",
            f"cube_proxy_accept_errors_total {stats.accept_errors}",
        ]

    @staticmethod
    def _render_shared_limits(lines: list[str], stats: SharedLimitsStats) -> None:
        lines += [
            "# HELP cube_proxy_shared_limits_up 1: limits shared through Redis; 0: per process.",
            "# TYPE cube_proxy_shared_limits_up gauge",
            f"cube_proxy_shared_limits_up {int(stats.up)}",
            "# HELP cube_proxy_shared_limits_fallback_total Limit decisions made per process (Redis down).",
            "# TYPE cube_proxy_shared_limits_fallback_total counter",
            f"cube_proxy_shared_limits_fallback_total {stats.fallbacks}",
            "# HELP cube_proxy_shared_limits_round_trips_total Token-bucket calls that Redis answered.",
            "# TYPE cube_proxy_shared_limits_round_trips_total counter",
            f"cube_proxy_shared_limits_round_trips_total {stats.round_trips}",
            "# HELP cube_proxy_shared_limits_outages_total Times Redis was lost.",
            "# TYPE cube_proxy_shared_limits_outages_total counter",
            f"cube_proxy_shared_limits_outages_total {stats.outages}",
        ]

    @staticmethod
    def _render_histograms(
        lines: list[str], name: str, help_text: str, series: dict[str, _Histogram]
    ) -> None:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for route, histogram in sorted(series.items()):
            cumulative = 0
            for bound, count in zip(histogram.buckets, histogram.counts, strict=True):
                cumulative += count
                labels = _labels(("route",), (route,), f'le="{_number(bound)}"')
                lines.append(f"{name}_bucket{labels} {cumulative}")
            labels = _labels(("route",), (route,), 'le="+Inf"')
            lines.append(f"{name}_bucket{labels} {histogram.total}")
            plain = _labels(("route",), (route,))
            lines.append(f"{name}_sum{plain} {_number(histogram.sum)}")
            lines.append(f"{name}_count{plain} {histogram.total}")
