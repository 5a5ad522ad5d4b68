using Proxy.Core.Configuration;
using Proxy.Http.Http1;

namespace Proxy.Http.Routing;

/// <summary>The parts of a request head routes look at, sliced out of the head without copying.</summary>
internal readonly ref struct RequestView
{
    public RequestView(Http1RequestHead head)
    {
        Head = head;
        var target = head.Target;
        ReadOnlySpan<byte> host = head.Host;
        switch (head.TargetForm)
        {
            case Http1TargetForm.Absolute:
                // RFC 9112 §3.2.2: with an absolute-form target the authority of the target is the host.
                Http1Syntax.SplitAbsoluteForm(target, out var authorityStart, out var pathStart);
                host = target[authorityStart..pathStart];
                var at = host.LastIndexOf((byte)'@');
                if (at >= 0)
                {
                    host = host[(at + 1)..];
                }

                target = pathStart == target.Length ? "/"u8 : target[pathStart..];
                break;
            case Http1TargetForm.Authority:
                host = target;
                target = default;
                break;
        }

        var q = target.IndexOf((byte)'?');
        Path = q < 0 ? target : target[..q];
        Query = q < 0 ? default : target[(q + 1)..];
        HasQuery = q >= 0;
        Authority = host;
        Host = StripPort(host);
    }

    public Http1RequestHead Head { get; }

    /// <summary>Host without port; empty when the request named none.</summary>
    public ReadOnlySpan<byte> Host { get; }

    /// <summary>Host as the request named it, port included (the Host field, or the target's authority).</summary>
    public ReadOnlySpan<byte> Authority { get; }

    /// <summary>Path part of the target (before <c>?</c>), raw.</summary>
    public ReadOnlySpan<byte> Path { get; }

    /// <summary>Query after <c>?</c>, raw.</summary>
    public ReadOnlySpan<byte> Query { get; }

    public bool HasQuery { get; }

    internal static ReadOnlySpan<byte> StripPort(ReadOnlySpan<byte> host)
    {
        if (host.Length > 0 && host[0] == (byte)'[')
        {
            // IP literal: [v6]:port
            var close = host.IndexOf((byte)']');
            return close < 0 ? host : host[..(close + 1)];
        }

        var colon = host.LastIndexOf((byte)':');
        host = colon < 0 ? host : host[..colon];

        // A fully qualified name may end in a dot; example.com. is example.com.
        return host.Length > 1 && host[^1] == (byte)'.' ? host[..^1] : host;
    }
}
