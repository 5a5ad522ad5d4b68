using Proxy.Http.Http1;
using Proxy.Http.Http2.Client;
using Proxy.Http.Http2.Server;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Routing;

namespace Proxy.Http.Forwarding;

/// <summary>
/// The request head for an HTTP/2 upstream, handed over typed: instead of writing the head as HTTP/1.1 text for the
/// exchange to parse and map again, the forwarder fills the exchange's HTTP/2 field list itself. The fields are the
/// ones <see cref="WriteRequestHead"/> would write (the same visitor decides them), mapped as
/// <see cref="Http2UpstreamExchange.BuildRequestFields"/> maps a parsed head: pseudo-headers from the request line and
/// Host, Host itself left out, <c>te: trailers</c> when the client takes trailers, and nothing that only frames the
/// HTTP/1.1 hop (Transfer-Encoding, Connection). <c>Http1ForwardingTypedHeadTests</c> compares both ways field by field.
/// Such an exchange hands its final response head back typed too (<see cref="Http2UpstreamExchange.TryTakeTypedResponse"/>,
/// taken in <see cref="ReadFinalResponseHeadAsync"/>).
/// </summary>
internal sealed partial class Http1ForwardingSession
{
    /// <summary>
    /// Fills and sends the exchange's request head; false (nothing done) when the request needs the text path:
    /// CONNECT or Upgrade (the exchange answers those itself), or more than one Host field going upstream (the text
    /// path's parse refuses that head).
    /// </summary>
    private bool TrySendHttp2Head(Http2UpstreamExchange exchange, HeaderMutations mutations)
    {
        var head = _request;
        if (head.Method == Http1Method.Connect || head.IsUpgrade)
        {
            return false;
        }

        // Which Host goes upstream: the first pass finds it (the pseudo-headers come first in the list).
        var hosts = new HostFieldSink();
        VisitFields(ref hosts, head.Headers, mutations, _subjectHeader);
        if (_subjectHeader is not null && _subjectValue is not null)
        {
            hosts.Add(_subjectHeader, _subjectValue);
        }

        if (hosts.Count > 1)
        {
            return false;
        }

        var fields = exchange.BeginTypedHead(out var endpoint, out var secure);
        Http2UpstreamExchange.AddPseudoHeaders(fields, head.MethodBytes, UpstreamTarget, head.TargetForm, hosts.Host, endpoint, secure);
        var sink = new Http2FieldSink(fields);
        VisitFields(ref sink, head.Headers, mutations, _subjectHeader);
        if (_subjectHeader is not null && _subjectValue is not null)
        {
            sink.Add(_subjectHeader, _subjectValue);
        }

        if (_requestIdGenerated && !mutations.IsRemoved(RequestIdName))
        {
            sink.Add(RequestIdName, _requestId.AsSpan(0, _requestIdLength));
        }

        if (_meshUpgrade)
        {
            sink.Add(MeshOrigProtoName, MeshOrigProtoHttp11);
        }

        var trailers = AcceptsTrailers(head.Headers);
        if (trailers)
        {
            fields.Add("te"u8, "trailers"u8);
        }

        exchange.SendTypedHead(head.Method == Http1Method.Head, trailers, head.BodyKind, head.ContentLength);
        return true;
    }

    // A typed response head given to an HTTP/2 lane and not yet announced to its pump (see FlushClientAsync).
    private Http2Lane? _laneHeadToAnnounce;

    /// <summary>
    /// The response head for an HTTP/2 client's lane, handed over typed: the lane's <see cref="Http2Lane.ResponseHead"/>
    /// gets what <see cref="WriteResponseHead"/> would write and the lane's pump would parse back (the same fields,
    /// the body framing as the pipe will carry it, keep-alive as decided), and the pump takes it at the next flush.
    /// </summary>
    private void SetLaneResponseHead(Http2Lane lane, HeaderMutations mutations, bool keepAlive)
    {
        var response = _response;
        var size = new FieldBytesSink();
        VisitFields(ref size, response.Headers, mutations, null);
        var target = lane.ResponseHead;
        target.BeginTyped(response.StatusCode, response.ReasonPhrase, size.Bytes);
        var fill = new ResponseHeadSink(target);
        VisitFields(ref fill, response.Headers, mutations, null);
        target.EndTyped(response.BodyKind, response.ContentLength, keepAlive);
        lane.SetTypedHead();
        _laneHeadToAnnounce = lane;
    }

    private struct FieldBytesSink : IFieldSink
    {
        public int Bytes;

        public void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Bytes += name.Length + value.Length;
    }

    private readonly struct ResponseHeadSink(Http1ResponseHead target) : IFieldSink
    {
        public void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => target.AddTypedField(name, value);
    }

    private static bool IsHost(ReadOnlySpan<byte> name) => name.Length == 4 && System.Text.Ascii.EqualsIgnoreCase(name, "host"u8);

    /// <summary>Counts the Host fields going upstream and keeps the first one's value.</summary>
    private ref struct HostFieldSink : IFieldSink
    {
        public int Count;
        public ReadOnlySpan<byte> Host;

        public void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            if (IsHost(name) && Count++ == 0)
            {
                Host = value;
            }
        }
    }

    /// <summary>Regular fields into the HTTP/2 list; Host became :authority.</summary>
    private readonly struct Http2FieldSink(Http2FieldList fields) : IFieldSink
    {
        public void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            if (!IsHost(name))
            {
                fields.Add(name, value);
            }
        }
    }
}
