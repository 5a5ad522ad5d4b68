using System.Buffers.Text;
using Proxy.Core.Configuration;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Fault injection (issue 6, part 8; Istio's HTTPFaultInjection): a route's <c>fault</c> delays and/or aborts a share of
/// the requests it matches, after routing and before an endpoint is picked, so an aborted request never reaches an
/// upstream and a delayed one is balanced when its delay is over. Shares are drawn from
/// <see cref="Http1ForwarderOptions.Random"/> (tests make it deterministic). With <c>headerControl</c> the request fields
/// <see cref="DelayHeader"/>, <see cref="AbortHeader"/> and <see cref="AbortGrpcHeader"/> inject that fault into that
/// request (Envoy's header-controlled faults). A delay counts toward the request timeout (and a gRPC call's deadline):
/// when that expires first, the request is answered 504 (DEADLINE_EXCEEDED) then.
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    /// <summary>Request field asking for a delay of that many milliseconds (routes with <c>headerControl</c>).</summary>
    internal static ReadOnlySpan<byte> DelayHeader => "x-proxy-fault-delay-ms"u8;

    /// <summary>Request field asking to be aborted with that HTTP status, 200-599 (routes with <c>headerControl</c>).</summary>
    internal static ReadOnlySpan<byte> AbortHeader => "x-proxy-fault-abort"u8;

    /// <summary>Request field asking to be aborted with that gRPC status, 1-16 (routes with <c>headerControl</c>).</summary>
    internal static ReadOnlySpan<byte> AbortGrpcHeader => "x-proxy-fault-abort-grpc"u8;

    /// <summary>The longest delay a request may ask for by header.</summary>
    internal static readonly TimeSpan MaxHeaderDelay = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Decides and applies the route's faults: null when the request goes on (possibly after a delay), else the proxy
    /// answered it (abort, a timeout during the delay, the client gone) and the value says whether the connection stays usable.
    /// </summary>
    private async ValueTask<bool?> InjectFaultAsync(FaultConfig fault)
    {
        var delay = TimeSpan.Zero;
        var delayWhy = "";
        var abortHttp = -1;
        var abortGrpc = -1;
        var abortWhy = "";
        if (fault.HeaderControl)
        {
            var headers = _request.Headers;
            if (headers.TryGetValue(DelayHeader, out var value) && Utf8Parser.TryParse(value, out int ms, out var used) && used == value.Length && ms > 0)
            {
                delay = TimeSpan.FromMilliseconds(ms) < MaxHeaderDelay ? TimeSpan.FromMilliseconds(ms) : MaxHeaderDelay;
                delayWhy = "asked for by the request's x-proxy-fault-delay-ms field";
            }

            if (headers.TryGetValue(AbortHeader, out value) && Utf8Parser.TryParse(value, out int status, out used) && used == value.Length && status is >= 200 and <= 599)
            {
                abortHttp = status;
                abortWhy = "asked for by the request's x-proxy-fault-abort field";
            }

            if (headers.TryGetValue(AbortGrpcHeader, out value) && Utf8Parser.TryParse(value, out int code, out used) && used == value.Length && code is >= 1 and <= 16)
            {
                abortGrpc = code;
                abortWhy = "asked for by the request's x-proxy-fault-abort-grpc field";
            }
        }

        if (delay == TimeSpan.Zero && fault.Delay is { } configuredDelay && Draw(configuredDelay.Percentage))
        {
            delay = configuredDelay.Duration;
            delayWhy = $"for {FaultConfigReader.FormatPercentage(configuredDelay.Percentage)}% of its requests";
        }

        if (abortHttp < 0 && abortGrpc < 0 && fault.Abort is { } abort && Draw(abort.Percentage))
        {
            abortHttp = abort.HttpStatus ?? -1;
            abortGrpc = abort.GrpcStatus ?? -1;
            abortWhy = $"for {FaultConfigReader.FormatPercentage(abort.Percentage)}% of its requests";
        }

        if (delay > TimeSpan.Zero)
        {
            _observer.OnFaultInjected(_forwarder.Listener, _route, "delay");
            // No longer than the request timeout (or the call's grpc-timeout) allows.
            var wait = DueIn(delay);
            if (wait > TimeSpan.Zero)
            {
                try
                {
                    await Task.Delay(wait, _time, _cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return await CancelledAsync().ConfigureAwait(false);
                }
            }

            if (_cancelled)
            {
                return await CancelledAsync().ConfigureAwait(false);
            }

            if (wait < delay)
            {
                _deadlineExpired = true;
                var during = $"during the {Ms(delay)} ms fault delay that route {_route} on listener {_forwarder.Listener} injected ({delayWhy}), before the request reached service {_service}";
                return _deadlineIsRequest
                    ? await RespondAsync(504, ProxyErrors.RequestTimeout, $"the request timeout of {Ms(_requestTimeout)} ms expired {during}").ConfigureAwait(false)
                    : await RespondAsync(504, ProxyErrors.DeadlineExceeded, $"the call's grpc-timeout of {Ms(_grpcTimeout)} ms expired {during}").ConfigureAwait(false);
            }
        }

        if (abortHttp < 0 && abortGrpc < 0)
        {
            return null;
        }

        _observer.OnFaultInjected(_forwarder.Listener, _route, "abort");
        var httpStatus = abortHttp >= 0 ? abortHttp : GrpcSemantics.HttpStatusFor(abortGrpc);
        var grpcStatus = abortGrpc >= 0 ? abortGrpc : GrpcSemantics.StatusFor(abortHttp, ProxyErrors.FaultAbort);
        var answer = _grpc ? $"gRPC status {GrpcStatusNames.Name(grpcStatus)}" : $"{httpStatus}";
        return await RespondAsync(httpStatus, ProxyErrors.FaultAbort,
            $"route {_route} on listener {_forwarder.Listener} aborted the request to service {_service} with {answer}: an injected fault ({abortWhy})",
            grpcStatus: grpcStatus).ConfigureAwait(false);
    }

    /// <summary>True for <paramref name="percentage"/> of the calls (0-100, in steps of 0.0001).</summary>
    private bool Draw(double percentage) => percentage >= 100 || (percentage > 0 && _options.Random.Next(1_000_000) < percentage * 10_000);
}
