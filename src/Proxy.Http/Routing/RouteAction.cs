using Proxy.Core.Configuration;
using System.Text;
using Proxy.Core.Balancing;
using Proxy.Http.Http1;

namespace Proxy.Http.Routing;

/// <summary>A service (and optional subset) a route sends requests to. Immutable; compare by reference.</summary>
public sealed class RouteDestination
{
    internal RouteDestination(string service, string? subset, int weight)
    {
        Service = service;
        Subset = subset;
        Weight = weight;
    }

    public string Service { get; }

    /// <summary>Subset of the service (e.g. <c>v2</c>), or null for the whole service.</summary>
    public string? Subset { get; }

    public int Weight { get; }

    public override string ToString() => Subset is null ? Service : $"{Service}/{Subset}";
}

/// <summary>
/// What a matched route does: choose a destination (one service, or a weighted split over subsets for a
/// canary such as v1 90 / v2 10) and the header changes for the request and the response.
/// </summary>
public sealed class RouteAction
{
    private readonly RouteDestination[] _destinations;
    private readonly int[] _cumulative;
    private readonly int _totalWeight;

    private readonly PathReplacement? _pathRewrite;
    private readonly byte[]? _hostRewrite;

    /// <param name="config">The action.</param>
    /// <param name="match">The route's path match, which a prefix replacement (rewrite or redirect) replaces the matched part of.</param>
    internal RouteAction(RouteActionConfig config, PathMatchConfig? match = null)
    {
        if (config.Redirect is not null || config.DirectResponse is not null)
        {
            Redirect = config.Redirect is { } redirect ? new RouteRedirect(redirect, match) : null;
            Direct = config.DirectResponse is { } direct ? new DirectResponse(direct) : null;
            _destinations = [];
            _cumulative = [];
            RequestHeaders = HeaderMutations.None;
            ResponseHeaders = new HeaderMutations(config.ResponseHeaders);
            return;
        }

        if (config.Destinations.Count == 0)
        {
            throw new ArgumentException("a route action needs at least one destination", nameof(config));
        }

        _destinations = new RouteDestination[config.Destinations.Count];
        _cumulative = new int[_destinations.Length];
        long total = 0;
        for (var i = 0; i < _destinations.Length; i++)
        {
            var d = config.Destinations[i];
            if (d.Weight <= 0 && _destinations.Length > 1)
            {
                throw new ArgumentException($"destination {i}: weight must be positive", nameof(config));
            }

            _destinations[i] = new RouteDestination(d.Service, d.Subset, d.Weight);
            total += Math.Max(d.Weight, 1);
            if (total > int.MaxValue)
            {
                throw new ArgumentException("the sum of the weights exceeds 2147483647", nameof(config));
            }

            _cumulative[i] = (int)total;
        }

        _totalWeight = (int)total;
        var requestHeaders = config.RequestHeaders;
        if (config.Rewrite is { } rewrite)
        {
            _pathRewrite = rewrite.Path is { } path ? PathReplacement.Whole(path)
                : rewrite.PathPrefix is { } prefix ? PathReplacement.Prefix(prefix, match ?? throw new ArgumentException("rewrite.pathPrefix needs the route's path match", nameof(match)))
                : null;
            if (rewrite.Host is { } host)
            {
                // The new Host replaces the request's (HTTP/2 upstreams: :authority) like any set field.
                _hostRewrite = Encoding.ASCII.GetBytes(host);
                requestHeaders = requestHeaders with { Set = [.. requestHeaders.Set, new("Host", host)] };
            }
        }

        RequestHeaders = new HeaderMutations(requestHeaders);
        ResponseHeaders = new HeaderMutations(config.ResponseHeaders);
    }

    /// <summary>The redirect this route answers with instead of forwarding, or null.</summary>
    public RouteRedirect? Redirect { get; }

    /// <summary>The fixed response this route answers with instead of forwarding, or null.</summary>
    public DirectResponse? Direct { get; }

    /// <summary>True when the route answers requests itself (<see cref="Redirect"/> or <see cref="Direct"/>): no destination.</summary>
    public bool AnswersItself => Redirect is not null || Direct is not null;

    /// <summary>True when requests go upstream with another target than they came with (a path rewrite, or a host rewrite of an absolute-form target).</summary>
    public bool RewritesTarget => _pathRewrite is not null || _hostRewrite is not null;

    /// <summary>The most bytes <see cref="WriteUpstreamTarget"/> can write for <paramref name="target"/>.</summary>
    public int MaxUpstreamTargetLength(ReadOnlySpan<byte> target) =>
        target.Length + (_pathRewrite?.MaxLength(target.Length) ?? 0) + (_hostRewrite?.Length ?? 0) + 1;

    /// <summary>
    /// Writes the target the request goes upstream with: the path replaced (the query kept), and for an
    /// absolute-form target the rewritten host as its authority. Returns -1 when the target stays as it is
    /// (authority-form CONNECT, asterisk-form OPTIONS, or nothing to change for this form). Allocates nothing.
    /// </summary>
    public int WriteUpstreamTarget(ReadOnlySpan<byte> target, Http1TargetForm form, Span<byte> destination)
    {
        var n = 0;
        var rest = target;
        if (form == Http1TargetForm.Absolute)
        {
            Http1Syntax.SplitAbsoluteForm(target, out var schemeEnd, out var pathStart);
            var authority = target[schemeEnd..pathStart];
            rest = target[pathStart..];
            target[..schemeEnd].CopyTo(destination);
            n = schemeEnd;
            ReadOnlySpan<byte> newAuthority = _hostRewrite ?? authority;
            newAuthority.CopyTo(destination[n..]);
            n += newAuthority.Length;
        }
        else if (form != Http1TargetForm.Origin || _pathRewrite is null)
        {
            return -1;
        }

        var q = rest.IndexOf((byte)'?');
        var path = q < 0 ? rest : rest[..q];
        var query = q < 0 ? default : rest[q..];
        if (_pathRewrite is not null)
        {
            n += _pathRewrite.Apply(path.IsEmpty ? "/"u8 : path, destination[n..]);
        }
        else
        {
            path.CopyTo(destination[n..]);
            n += path.Length;
        }

        query.CopyTo(destination[n..]);
        return n + query.Length;
    }

    /// <summary>The destinations in configuration order.</summary>
    public ReadOnlySpan<RouteDestination> Destinations => _destinations;

    /// <summary>True when the action splits traffic over more than one destination.</summary>
    public bool IsSplit => _destinations.Length > 1;

    public HeaderMutations RequestHeaders { get; }

    public HeaderMutations ResponseHeaders { get; }

    /// <summary>
    /// Picks the destination for one request: the only one without consulting <paramref name="random"/>,
    /// otherwise each with probability weight / total weight. Allocates nothing.
    /// </summary>
    public RouteDestination PickDestination(IRandomSource random)
    {
        if (_destinations.Length == 1)
        {
            return _destinations[0];
        }

        var r = random.Next(_totalWeight);

        // Splits have a handful of entries: a linear scan beats a binary search here.
        var cumulative = _cumulative;
        for (var i = 0; i < cumulative.Length; i++)
        {
            if (r < cumulative[i])
            {
                return _destinations[i];
            }
        }

        return _destinations[^1];
    }
}

/// <summary>A header field as pre-encoded bytes (name as configured, value as ASCII/Latin-1).</summary>
public readonly record struct HeaderField(byte[] Name, byte[] Value);

/// <summary>
/// Header changes applied by the HTTP forwarder, allocation-free:
/// 1. drop every incoming field for which <see cref="IsRemoved"/> is true (the names in Remove and in Set);
/// 2. write every field of <see cref="Sets"/> (each replaces whatever the message carried);
/// 3. write every field of <see cref="Adds"/> (appended next to any the message carried).
/// </summary>
public sealed class HeaderMutations
{
    private readonly HeaderField[] _sets;
    private readonly HeaderField[] _adds;
    private readonly byte[][] _dropped;

    /// <summary>No changes.</summary>
    public static HeaderMutations None { get; } = new(new HeaderMutationsConfig());

    internal HeaderMutations(HeaderMutationsConfig config)
    {
        _sets = Encode(config.Set);
        _adds = Encode(config.Add);
        _dropped = new byte[config.Remove.Count + _sets.Length][];
        for (var i = 0; i < config.Remove.Count; i++)
        {
            _dropped[i] = Encoding.Latin1.GetBytes(config.Remove[i]);
        }

        for (var i = 0; i < _sets.Length; i++)
        {
            _dropped[config.Remove.Count + i] = _sets[i].Name;
        }
    }

    /// <summary>True when there is nothing to do (lets the forwarder skip the per-field check).</summary>
    public bool IsEmpty => _dropped.Length == 0 && _adds.Length == 0;

    public ReadOnlySpan<HeaderField> Sets => _sets;

    public ReadOnlySpan<HeaderField> Adds => _adds;

    /// <summary>Whether an incoming field with this name must not be forwarded (ASCII case-insensitive).</summary>
    public bool IsRemoved(ReadOnlySpan<byte> name)
    {
        foreach (var d in _dropped)
        {
            if (d.Length == name.Length && Ascii.EqualsIgnoreCase(d, name))
            {
                return true;
            }
        }

        return false;
    }

    private static HeaderField[] Encode(IReadOnlyList<KeyValuePair<string, string>> fields)
    {
        var result = new HeaderField[fields.Count];
        for (var i = 0; i < result.Length; i++)
        {
            result[i] = new HeaderField(Encoding.Latin1.GetBytes(fields[i].Key), Encoding.Latin1.GetBytes(fields[i].Value));
        }

        return result;
    }
}
