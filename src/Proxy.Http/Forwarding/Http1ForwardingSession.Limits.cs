using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Identity;
using Proxy.Core.Limits;
using Proxy.Core.Upstream;
using Proxy.Http.Routing;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Circuit breakers and local rate limits (issue 6 parts 4 and 7; README "Circuit breaking" and "Local rate limiting").
/// Hooks in the request path, in order:
/// <list type="number">
/// <item>after routing (<see cref="TryAdmit"/>): the route's rate limit, else the service's (429 <c>rate_limited</c>
/// with <c>retry-after</c>); then the service's <c>maxRequests</c> (503 <c>overflow</c>), a slot held to the request's end;</item>
/// <item>before each rent (<see cref="PendingFull"/>): <c>maxPendingRequests</c>; a rent that does not complete at once
/// counts as pending while it waits (<see cref="AwaitRentAsync"/>);</item>
/// <item>a new upstream connection past <c>maxConnections</c>: the HTTP/1.1 pool waits (pending) for a connection or a
/// freed slot up to the connect timeout, the HTTP/2 pool fails at once in its connector (<see cref="CircuitBreakingConnector"/>);
/// either way cause <see cref="ConnectFailureCause.Overflow"/>: 503 <c>overflow</c> (<see cref="RespondConnectionOverflowAsync"/>), not retried;</item>
/// <item>a retry (<see cref="TryHoldRetrySlot"/>): <c>maxRetries</c>; over it the retry is not made and the client gets
/// the failure it would have had without a retry policy.</item>
/// </list>
/// Slots are given back when the request ends (<see cref="ReleaseLimits"/>, from <see cref="EndEndpointRequest"/>).
/// The allowed path takes Interlocked counters and a token bucket: no allocation.
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    private static readonly byte[] RetryAfterName = "retry-after"u8.ToArray();

    /// <summary>retry-after values 1..60 s, made once (longer waits are formatted when needed).</summary>
    private static readonly byte[][] RetryAfterValues = MakeRetryAfterValues();

    private CircuitBreaker? _requestSlot;
    private CircuitBreaker? _retrySlot;
    private CircuitBreaker? _overflowBreaker;
    private CircuitBreakerLimit _overflowLimit;
    private LocalRateLimiter? _refusingLimiter;
    private bool _routeRateLimit;
    private TimeSpan _retryAfter;

    /// <summary>
    /// After routing, before any upstream work: false when a limit refused the request (answer with
    /// <see cref="RespondLimitedAsync"/>).
    /// </summary>
    private bool TryAdmit(Service? service, Route? route)
    {
        _refusingLimiter = null;
        _overflowBreaker = null;
        var limiter = route?.RateLimiter ?? service?.RateLimiter;
        if (limiter is not null && !limiter.TryAcquire(SourceKey(limiter), out _retryAfter))
        {
            _refusingLimiter = limiter;
            _routeRateLimit = route?.RateLimiter is not null;
            _observer.OnRateLimited(_forwarder.Listener, _service, _routeRateLimit ? _route : "");
            return false;
        }

        if (service?.Breaker is { } breaker)
        {
            if (!breaker.TryEnterRequest())
            {
                _overflowBreaker = breaker;
                _overflowLimit = CircuitBreakerLimit.MaxRequests;
                return false;
            }

            _requestSlot = breaker;
        }

        return true;
    }

    /// <summary>The bucket key of a per-source limit: the verified SPIFFE ID of an mTLS client, else its IP address.</summary>
    private object? SourceKey(LocalRateLimiter limiter)
    {
        if (limiter.Config.By != RateLimitKey.Source)
        {
            return null;
        }

        if (_peer is { Transport: PeerTransport.MutualTls, PeerIdentity: { } identity })
        {
            return identity;
        }

        return (_downstream.RemoteEndPoint as IPEndPoint)?.Address;
    }

    /// <summary>True (noted for <see cref="RespondLimitedAsync"/>) when the service has <c>maxPendingRequests</c> requests waiting now.</summary>
    private bool PendingFull()
    {
        if (_requestSlot is not { } breaker || !breaker.PendingFull())
        {
            return false;
        }

        _overflowBreaker = breaker;
        _overflowLimit = CircuitBreakerLimit.MaxPendingRequests;
        return true;
    }

    /// <summary>A rent that did not complete at once: counted as pending against the service's breaker while it waits.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<PoolRentResult> AwaitRentAsync(ValueTask<PoolRentResult> renting)
    {
        if (renting.IsCompleted || _requestSlot is not { } breaker)
        {
            return await renting.ConfigureAwait(false);
        }

        breaker.EnterPending();
        try
        {
            return await renting.ConfigureAwait(false);
        }
        finally
        {
            breaker.ExitPending();
        }
    }

    /// <summary>
    /// Whether a retry may start under the service's <c>maxRetries</c>: a request holds one slot from its first retry
    /// to its end. False (counted, logged) when the service is at the limit.
    /// </summary>
    private bool TryHoldRetrySlot(Service service)
    {
        if (service.Breaker is not { } breaker || _retrySlot is not null)
        {
            return true;
        }

        if (!breaker.TryEnterRetry())
        {
            LimitsLog.RetryOverflow(_forwarder.Logger, _service, breaker.Config.MaxRetries);
            return false;
        }

        _retrySlot = breaker;
        return true;
    }

    /// <summary>Gives back the request's slots (it ended, whatever happened).</summary>
    private void ReleaseLimits()
    {
        if (_requestSlot is { } request)
        {
            _requestSlot = null;
            request.ExitRequest();
        }

        if (_retrySlot is { } retry)
        {
            _retrySlot = null;
            retry.ExitRetry();
        }
    }

    /// <summary>The access log's <c>limit</c> for this request: the limit that refused it, else null.</summary>
    private string? RefusingLimit() => _error switch
    {
        ProxyErrors.Overflow => CircuitBreaker.NameOf(_overflowLimit),
        ProxyErrors.RateLimited => "rateLimit",
        _ => null,
    };

    /// <summary>The proxy-made answer to a request a limit refused: 429 <c>rate_limited</c> or 503 <c>overflow</c>.</summary>
    private ValueTask<bool> RespondLimitedAsync()
    {
        if (_refusingLimiter is { } limiter)
        {
            var seconds = LocalRateLimiter.RetryAfterSeconds(_retryAfter);
            _challenge = new HeaderField(RetryAfterName, seconds <= RetryAfterValues.Length
                ? RetryAfterValues[seconds - 1]
                : System.Text.Encoding.ASCII.GetBytes(seconds.ToString(CultureInfo.InvariantCulture)));
            var owner = _routeRateLimit ? $"route {_route} on listener {_forwarder.Listener}" : $"service {_service}";
            return RespondAsync(429, ProxyErrors.RateLimited,
                $"{owner} is rate limited to {limiter.Config.Describe()} and this request is over it; retry after {seconds} s");
        }

        return RespondAsync(503, ProxyErrors.Overflow, $"{_overflowBreaker!.Describe(_overflowLimit)}, so the request was not sent upstream");
    }

    /// <summary>503 <c>overflow</c> for a connect the service's <c>maxConnections</c> refused (nothing was dialled).</summary>
    private ValueTask<bool> RespondConnectionOverflowAsync(ConnectFailure failure, bool hasBody)
    {
        _overflowLimit = CircuitBreakerLimit.MaxConnections;
        return RespondAsync(503, ProxyErrors.Overflow, $"{failure.Detail}, so no connection to {failure.Destination} was opened and the request was not sent upstream", hasBody);
    }

    private static byte[][] MakeRetryAfterValues()
    {
        var values = new byte[60][];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = System.Text.Encoding.ASCII.GetBytes((i + 1).ToString(CultureInfo.InvariantCulture));
        }

        return values;
    }

    private static partial class LimitsLog
    {
        [LoggerMessage(EventId = 3140, Level = LogLevel.Debug, Message = "service {Service} is at its circuit breaker limit maxRetries ({MaxRetries} requests being retried): the retry is not made")]
        public static partial void RetryOverflow(ILogger logger, string service, int maxRetries);
    }
}
