using System.Globalization;
using System.Text;
using System.Text.Json;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Health;

namespace Proxy.Sidecar.Admin;

/// <summary>
/// <c>GET /clusters</c>: every service with its balancer, its endpoints (address, weight, requests in flight, peak-EWMA
/// latency estimate, health check status, ejection, consecutive failures, success rate) and its subsets. JSON by
/// default; <c>?format=text</c> gives Envoy's <c>service::endpoint::field::value</c> lines. Read from the services'
/// current endpoint sets at each request.
/// </summary>
internal sealed class ClustersReport(Func<IEnumerable<Service>> services, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public string RenderJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartArray("services");
            foreach (var service in Sorted(services()))
            {
                WriteService(w, service);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    public string RenderText()
    {
        var text = new StringBuilder();
        foreach (var service in Sorted(services()))
        {
            var name = service.Name;
            Line(text, name, "balancer", LoadBalancers.Name(service.BalancerKind));
            if (service.Health is { } health)
            {
                Line(text, name, "panic", health.InPanic ? "true" : "false");
                Line(text, name, "panic_picks", health.PanicPicks.ToString(CultureInfo.InvariantCulture));
            }

            foreach (var subset in Sorted(service.Subsets))
            {
                foreach (var e in subset.Endpoints)
                {
                    Line(text, name, "subset::" + subset.SubsetName, e.Address.ToString());
                }
            }

            var now = _time.GetTimestamp();
            foreach (var e in service.Endpoints)
            {
                var prefix = $"{name}::{e.Address}";
                foreach (var (field, value) in Fields(e, service.Health, now))
                {
                    text.Append(prefix).Append("::").Append(field).Append("::").Append(value).Append('\n');
                }
            }
        }

        return text.ToString();
    }

    private static void Line(StringBuilder text, string service, string field, string value)
        => text.Append(service).Append("::").Append(field).Append("::").Append(value).Append('\n');

    private static IEnumerable<Service> Sorted(IEnumerable<Service> list)
        => list.OrderBy(static s => s.SubsetName ?? s.Name, StringComparer.Ordinal);

    private void WriteService(Utf8JsonWriter w, Service service)
    {
        w.WriteStartObject();
        w.WriteString("name", service.Name);
        w.WriteString("balancer", LoadBalancers.Name(service.BalancerKind));
        var health = service.Health;
        if (health is not null)
        {
            w.WriteBoolean("panic", health.InPanic);
            w.WriteNumber("panicPicks", health.PanicPicks);
            if (health.OutlierDetection is { } od)
            {
                HealthConfigReader.WriteOutlierDetection(w, od);
            }

            if (health.HealthCheck is { } hc)
            {
                HealthConfigReader.WriteHealthCheck(w, hc);
            }
        }

        w.WriteStartArray("endpoints");
        var now = _time.GetTimestamp();
        foreach (var e in service.Endpoints)
        {
            w.WriteStartObject();
            w.WriteString("address", e.Address.ToString());
            w.WriteNumber("weight", e.Weight);
            w.WriteNumber("inFlight", e.InFlight);
            if (e.LatencyEstimate is { } latency)
            {
                w.WriteNumber("latencyMs", Math.Round(latency.TotalMilliseconds, 3));
            }
            else
            {
                w.WriteNull("latencyMs");
            }

            w.WriteBoolean("available", e.IsAvailable);
            w.WriteString("health", HealthName(e, health));
            if (e.CheckDetail is { } detail)
            {
                w.WriteString("healthDetail", detail);
            }

            w.WriteBoolean("ejected", e.IsEjected);
            if (e.IsEjected)
            {
                var left = Left(e, now);
                w.WriteNumber("ejectedForMs", Math.Round(left.TotalMilliseconds));
                w.WriteString("ejectedUntil", (_time.GetUtcNow() + left).ToString("O", CultureInfo.InvariantCulture));
            }

            if (e.EjectionReason is { } reason)
            {
                w.WriteString("lastEjectionReason", reason);
            }

            w.WriteNumber("timesEjected", e.TimesEjected);
            w.WriteNumber("ejectionMultiplier", e.EjectionMultiplier);
            w.WriteNumber("consecutive5xx", e.Consecutive5xx);
            w.WriteNumber("consecutiveGatewayFailures", e.ConsecutiveGatewayFailures);
            w.WriteNumber("consecutiveLocalOriginFailures", e.ConsecutiveLocalOriginFailures);
            if (SuccessRate(e) is { } rate)
            {
                w.WriteNumber("successRate", Math.Round(rate, 2));
            }
            else
            {
                w.WriteNull("successRate");
            }

            w.WriteNumber("requests", e.TotalRequests);
            w.WriteNumber("failures", e.TotalFailures);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("subsets");
        foreach (var subset in Sorted(service.Subsets))
        {
            w.WriteStartObject();
            w.WriteString("name", subset.SubsetName);
            w.WriteStartArray("endpoints");
            foreach (var e in subset.Endpoints)
            {
                w.WriteStringValue(e.Address.ToString());
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private IEnumerable<(string Field, string Value)> Fields(Endpoint e, ServiceHealth? health, long now)
    {
        var c = CultureInfo.InvariantCulture;
        yield return ("weight", e.Weight.ToString(c));
        yield return ("in_flight", e.InFlight.ToString(c));
        yield return ("latency_ms", e.LatencyEstimate is { } l ? l.TotalMilliseconds.ToString("0.###", c) : "none");
        yield return ("available", e.IsAvailable ? "true" : "false");
        yield return ("health", HealthName(e, health));
        if (e.CheckDetail is { } detail)
        {
            yield return ("health_detail", detail);
        }

        yield return ("ejected", e.IsEjected ? "true" : "false");
        if (e.IsEjected)
        {
            yield return ("ejected_for_ms", Left(e, now).TotalMilliseconds.ToString("0", c));
        }

        yield return ("times_ejected", e.TimesEjected.ToString(c));
        yield return ("consecutive_5xx", e.Consecutive5xx.ToString(c));
        yield return ("consecutive_gateway_failures", e.ConsecutiveGatewayFailures.ToString(c));
        yield return ("consecutive_local_origin_failures", e.ConsecutiveLocalOriginFailures.ToString(c));
        yield return ("success_rate", SuccessRate(e) is { } rate ? rate.ToString("0.##", c) : "none");
        yield return ("requests", e.TotalRequests.ToString(c));
        yield return ("failures", e.TotalFailures.ToString(c));
    }

    /// <summary>The last evaluated interval's success rate (outlier detection), else the current window's, else none.</summary>
    private static double? SuccessRate(Endpoint e)
    {
        if (!double.IsNaN(e.LastSuccessRate))
        {
            return e.LastSuccessRate;
        }

        var requests = e.WindowRequests;
        return requests == 0 ? null : 100.0 * e.WindowSuccesses / requests;
    }

    private TimeSpan Left(Endpoint e, long now)
        => TimeSpan.FromSeconds(Math.Max(0, e.EjectedUntil - now) / (double)_time.TimestampFrequency);

    private static string HealthName(Endpoint e, ServiceHealth? health)
        => health?.HealthCheck is null ? "unchecked" : e.CheckStatus switch
        {
            HealthCheckStatus.Healthy => "healthy",
            HealthCheckStatus.Unhealthy => "unhealthy",
            _ => "unknown",
        };
}
