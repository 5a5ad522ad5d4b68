using System.Buffers;
using System.Globalization;
using System.Text;
using Proxy.Core.Configuration;
using Proxy.Http.Http1;

namespace Proxy.Http.Routing;

/// <summary>
/// A new path for a request: the whole path replaced, or only the part the route's path match matched (Gateway API's
/// ReplaceFullPath and ReplacePrefixMatch). The prefix form never doubles or drops a slash at the seam:
/// with a match of <c>/foo</c>, the replacement <c>/xyz</c> or <c>/xyz/</c> turns <c>/foo/bar</c> into <c>/xyz/bar</c>,
/// and <c>/</c> turns <c>/foo</c> into <c>/</c> and <c>/foo/bar</c> into <c>/bar</c>. Allocates nothing per request.
/// </summary>
public sealed class PathReplacement
{
    private readonly byte[] _value;
    private readonly byte[] _trimmed;
    private readonly int _matchedLength;
    private readonly bool _whole;

    private PathReplacement(string value, int matchedLength, bool whole)
    {
        _value = Encoding.ASCII.GetBytes(value);
        _trimmed = Encoding.ASCII.GetBytes(value.TrimEnd('/'));
        _matchedLength = matchedLength;
        _whole = whole;
    }

    /// <summary>Replaces the whole path.</summary>
    public static PathReplacement Whole(string path) => new(path, 0, whole: true);

    /// <summary>
    /// Replaces the matched part of the path: <paramref name="match"/> is the route's path match (exact, prefix or
    /// segmentPrefix; its value's length is the matched length, case-insensitive matches included).
    /// </summary>
    public static PathReplacement Prefix(string replacement, PathMatchConfig match)
    {
        ArgumentNullException.ThrowIfNull(match);
        if (match.Kind == PathMatchKind.Regex)
        {
            throw new ArgumentException("a prefix replacement needs an exact, prefix or segmentPrefix path match", nameof(match));
        }

        // A match ending in '/' leaves that slash with the rest, so the seam logic below sees "/bar", not "bar".
        var matched = match.Value.Length > 0 && match.Value[^1] == '/' ? match.Value.Length - 1 : match.Value.Length;
        return new PathReplacement(replacement, matched, whole: false);
    }

    /// <summary>The most bytes <see cref="Apply"/> can write for a path of <paramref name="pathLength"/> bytes.</summary>
    public int MaxLength(int pathLength) => _value.Length + pathLength + 1;

    /// <summary>Writes the new path for <paramref name="path"/> (which the route matched) to <paramref name="destination"/>; returns its length.</summary>
    public int Apply(ReadOnlySpan<byte> path, Span<byte> destination)
    {
        if (_whole)
        {
            _value.CopyTo(destination);
            return _value.Length;
        }

        var rest = path.Length >= _matchedLength ? path[_matchedLength..] : default;
        ReadOnlySpan<byte> head = !rest.IsEmpty && rest[0] == (byte)'/' ? _trimmed : _value;
        var n = 0;
        if (head.IsEmpty && rest.IsEmpty)
        {
            destination[n++] = (byte)'/';
            return n;
        }

        head.CopyTo(destination);
        n += head.Length;
        rest.CopyTo(destination[n..]);
        return n + rest.Length;
    }
}

/// <summary>A redirect a route answers with: which parts of the request's URL the <c>Location</c> replaces.</summary>
public sealed class RouteRedirect
{
    private readonly byte[]? _scheme;
    private readonly byte[]? _host;
    private readonly int? _port;
    private readonly PathReplacement? _path;

    internal RouteRedirect(RouteRedirectConfig config, PathMatchConfig? match)
    {
        Config = config;
        _scheme = config.Scheme is null ? null : Encoding.ASCII.GetBytes(config.Scheme);
        _host = config.Host is null ? null : Encoding.ASCII.GetBytes(config.Host);
        _port = config.Port;
        _path = config.Path is { } path ? PathReplacement.Whole(path)
            : config.PathPrefix is { } prefix ? PathReplacement.Prefix(prefix, match!) : null;
        StatusCode = config.Status;
    }

    public RouteRedirectConfig Config { get; }

    public int StatusCode { get; }

    /// <summary>
    /// Writes the <c>Location</c> value for <paramref name="request"/>: absolute (scheme, host, port unless the
    /// scheme's default, path, query unless stripped), or only path and query when neither the request nor the
    /// redirect names a host (an HTTP/1.0 request without Host). <paramref name="clientTls"/>: the request came
    /// over TLS, so its own scheme is https. Allocates nothing.
    /// </summary>
    internal void WriteLocation(IBufferWriter<byte> writer, in RequestView request, bool clientTls)
    {
        ReadOnlySpan<byte> requestScheme = clientTls ? "https"u8 : "http"u8;
        ReadOnlySpan<byte> scheme = _scheme ?? requestScheme;
        ReadOnlySpan<byte> host = _host ?? request.Host;
        if (!host.IsEmpty)
        {
            writer.Write(scheme);
            writer.Write("://"u8);
            writer.Write(host);
            var port = -1;
            if (_port is { } configured)
            {
                port = configured;
            }
            else if (_scheme is null)
            {
                // Gateway API: a configured scheme without a port means that scheme's well-known port.
                port = ParsePort(request.Authority);
            }

            var defaultPort = scheme.SequenceEqual("https"u8) ? 443 : 80;
            if (port > 0 && port != defaultPort)
            {
                var span = writer.GetSpan(6);
                span[0] = (byte)':';
                port.TryFormat(span[1..], out var written, default, CultureInfo.InvariantCulture);
                writer.Advance(written + 1);
            }
        }

        var path = request.Path.IsEmpty ? "/"u8 : request.Path;
        if (_path is null)
        {
            writer.Write(path);
        }
        else
        {
            var span = writer.GetSpan(_path.MaxLength(path.Length));
            writer.Advance(_path.Apply(path, span));
        }

        if (request.HasQuery && !Config.StripQuery)
        {
            writer.Write("?"u8);
            writer.Write(request.Query);
        }
    }

    /// <summary>The port of a Host value or authority (<c>h:8080</c>, <c>[::1]:8080</c>), or -1 when it names none.</summary>
    internal static int ParsePort(ReadOnlySpan<byte> authority)
    {
        var colon = authority.LastIndexOf((byte)':');
        if (colon < 0 || authority[(colon + 1)..].Contains((byte)']'))
        {
            return -1;
        }

        var close = authority.LastIndexOf((byte)']');
        if (close > colon)
        {
            return -1;
        }

        return int.TryParse(authority[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and <= 65535 ? port : -1;
    }
}

/// <summary>A fixed response a route answers with (status, body bytes and their length, ready to write).</summary>
public sealed class DirectResponse
{
    internal DirectResponse(DirectResponseConfig config)
    {
        StatusCode = config.Status;
        Body = Encoding.UTF8.GetBytes(config.Body);
        ContentLength = Encoding.ASCII.GetBytes(Body.Length.ToString(CultureInfo.InvariantCulture));
    }

    public int StatusCode { get; }

    public byte[] Body { get; }

    internal byte[] ContentLength { get; }
}
