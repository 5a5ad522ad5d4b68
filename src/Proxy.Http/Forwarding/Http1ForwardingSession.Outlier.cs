using Proxy.Core.Balancing;
using Proxy.Core.Discovery;
using Proxy.Core.Health;
using Proxy.Core.Upstream;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Outlier detection's view of the exchange (Core/Health/ServiceHealth.cs): every try's result is reported against the
/// endpoint it went to, for HTTP/1.1 requests and HTTP/2 streams alike (lanes run this same session):
/// <list type="bullet">
/// <item>a response head: its status (below 500 a success; 502, 503, 504 a gateway error; other 5xx a server error);</item>
/// <item>a failed connect (not a full pool: that is the proxy's own limit), a reset, a close or a response timeout
///       before any response: a local-origin failure; an unreadable response: a gateway error;</item>
/// <item>not counted: a refused HTTP/2 stream (the upstream shed it unprocessed), the reuse race (a pooled HTTP/1.1
///       connection the upstream had closed while idle), a client that went away.</item>
/// </list>
/// A pick that is unavailable means every endpoint of the set is out (the balancers' panic mode): counted. All of it is
/// allocation-free: a few interlocked operations per try.
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    // The health state of the service the current try's endpoint came from (null: none configured, or no service).
    private ServiceHealth? _pickHealth;

    private void OnEndpointPicked(Service service, Endpoint endpoint)
    {
        _pickHealth = service.Health;
        if (!endpoint.IsAvailable)
        {
            _pickHealth?.OnPanicPick();
        }
    }

    private void ReportOutlier(UpstreamResult result)
    {
        if (_pickedEndpoint is not { } endpoint)
        {
            return;
        }

        if (_pickHealth is { } health)
        {
            health.Report(endpoint, result);
        }
        else
        {
            endpoint.RecordResult(result);
        }
    }

    private void ReportConnectFailure(ConnectFailureCause cause)
    {
        if (cause is not (ConnectFailureCause.PoolExhausted or ConnectFailureCause.Overflow))
        {
            ReportOutlier(UpstreamResult.LocalOriginFailure);
        }
    }

    private void ReportUpstreamStatus(int status)
        => ReportOutlier(status < 500 ? UpstreamResult.Success : status is 502 or 503 or 504 ? UpstreamResult.GatewayError : UpstreamResult.ServerError);

    private void ReportNoResponse(ResponseOutcome outcome, bool refused, bool stream)
    {
        if (refused || outcome == ResponseOutcome.Cancelled || (outcome == ResponseOutcome.Closed && _reused && !stream && !_responseBytesSeen))
        {
            return;
        }

        ReportOutlier(outcome == ResponseOutcome.BadResponse ? UpstreamResult.GatewayError : UpstreamResult.LocalOriginFailure);
    }
}
