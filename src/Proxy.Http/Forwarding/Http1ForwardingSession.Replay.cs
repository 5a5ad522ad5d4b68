using System.Buffers;
using System.IO.Pipelines;
using Proxy.Core.Configuration;
using Proxy.Http.Http1;

namespace Proxy.Http.Forwarding;

/// <summary>
/// Request-body replay for retries (issue 6): a request whose route or service has a retry policy is kept as it is
/// sent (<see cref="RequestReplayBuffer"/>: the head once, the body bytes as the pump consumes them, up to the policy's
/// <see cref="RetryPolicyConfig.MaxBodyBytes"/>). A retry sends the kept head and body to the new try's connection and,
/// when the client had not finished the body, resumes the pump from where the previous try's stopped. A body past the
/// limit, cut short by the client or malformed makes the request not retriable.
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    /// <summary>Starts keeping the request when a retry policy applies and it has a body that may fit the limit.</summary>
    private void BeginReplay()
    {
        if (!_hasBody || _retryPolicy is not { MaxBodyBytes: > 0 } policy || _retryService is null
            || (_request.BodyKind == Http1BodyKind.ContentLength && _request.ContentLength > policy.MaxBodyBytes))
        {
            return;
        }

        _replaying = true;
        (_replay ??= new RequestReplayBuffer()).Begin(policy.MaxBodyBytes);
    }

    /// <summary>Gives the kept request's memory back (end of every request).</summary>
    private void EndReplay()
    {
        if (_replaying)
        {
            _replaying = false;
            _replay!.Reset();
        }
    }

    /// <summary>
    /// Writes the kept request to a try's connection: the head (written into the buffer on the first try, while the
    /// request head's bytes are still in the client's buffer), then whatever body was kept.
    /// </summary>
    private void WriteKeptRequest(PipeWriter output)
    {
        var replay = _replay!;
        if (!replay.HasHead)
        {
            WriteRequestHead(replay, _requestMutations);
            replay.EndHead();
        }

        output.Write(replay.Head);
        var body = replay.Body;
        if (!body.IsEmpty)
        {
            output.Write(body);
        }
    }

    /// <summary>
    /// Whether the request can be sent again: it has no body, its body has not started to flow (nothing of it was
    /// consumed), or every consumed byte is kept and the body is sound so far.
    /// </summary>
    private bool BodyReplayable() =>
        !_hasBody || !_bodyStarted || (_replaying && !_replay!.Overflowed && !_bodyBroken);

    /// <summary>
    /// Before deciding on a retry of a retriable response: stops the body's pump to this try's upstream (it must end
    /// before the connection goes back to the pool). A body the client had not finished stays partly unread when no
    /// retry follows (<see cref="_bodyAbandoned"/>: the client connection then closes after the response). Always true
    /// (it only sequences the retry condition).
    /// </summary>
    private async ValueTask<bool> SettlePumpForRetryAsync()
    {
        if (_pumpStarted)
        {
            await SettlePumpAsync(cancel: true).ConfigureAwait(false);
            _bodyAbandoned = !_bodyComplete;
        }

        return true;
    }

    /// <summary>
    /// The policy's gRPC condition the response matches: a trailers-only response (its head carries <c>grpc-status</c>)
    /// with one of the named codes; else null.
    /// </summary>
    private string? GrpcRetryReason(RetryOn on)
    {
        var headers = _response.Headers;
        var i = headers.IndexOf("grpc-status"u8);
        if (i < 0)
        {
            return null;
        }

        var value = headers.GetValue(i);
        if (value.Length is 0 or > 2 || !System.Buffers.Text.Utf8Parser.TryParse(value, out int code, out var used) || used != value.Length)
        {
            return null;
        }

        return code switch
        {
            1 when (on & RetryOn.GrpcCancelled) != 0 => "cancelled",
            4 when (on & RetryOn.GrpcDeadlineExceeded) != 0 => "deadline-exceeded",
            8 when (on & RetryOn.GrpcResourceExhausted) != 0 => "resource-exhausted",
            13 when (on & RetryOn.GrpcInternal) != 0 => "internal",
            14 when (on & RetryOn.GrpcUnavailable) != 0 => "unavailable",
            _ => null,
        };
    }
}
