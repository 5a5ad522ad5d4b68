using Proxy.Core.Configuration;
using System.Buffers;
using System.Text;
using Proxy.Core.Balancing;
using Proxy.Http.Http1;
using Proxy.Http.Routing;

namespace Proxy.Http.Tests.Routing;

internal static class RoutingTestHelpers
{
    public static Http1RequestHead Head(string text)
    {
        var bytes = Encoding.Latin1.GetBytes(text);
        var head = new Http1RequestHead();
        Assert.True(new Http1RequestHeadParser(new Http1ParserOptions { AllowUnregisteredMethods = true }).TryParse(new ReadOnlySequence<byte>(bytes), head, out _));
        return head;
    }

    public static Http1RequestHead Get(string target, string host = "example.com", string extra = "") =>
        Head($"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");

    public static RouteTable Table(string json)
    {
        var result = RouteConfigReader.ReadJson(json);
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        return new RouteTable(result.Routes!);
    }

    /// <summary>Table with one route named "r" using <paramref name="match"/>, then nothing.</summary>
    public static RouteTable One(string match) => Table($$"""[{ "name": "r", "match": {{match}}, "action": { "service": "s" } }]""");

    public static string? MatchName(RouteTable table, Http1RequestHead head) => table.TryMatch(head, out var r) ? r.Name : null;
}

/// <summary>Deterministic randomness for split tests.</summary>
internal sealed class SeededRandomSource(int seed) : IRandomSource
{
    private readonly Random _random = new(seed);

    public int Next(int maxExclusive) => _random.Next(maxExclusive);
}

/// <summary>Returns scripted values in turn.</summary>
internal sealed class ScriptedRandomSource(params int[] values) : IRandomSource
{
    private int _next;

    public int Next(int maxExclusive)
    {
        var v = values[_next++ % values.Length];
        Assert.InRange(v, 0, maxExclusive - 1);
        return v;
    }
}
