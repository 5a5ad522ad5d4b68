using System.Text.Json;
using System.Text.RegularExpressions;
using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

/// <summary>One case of the llhttp test corpus (../shared/data/llhttp-cases), with what llhttp made of it.</summary>
internal sealed partial class LlhttpCase
{
    public required string Id { get; init; }
    public required string Type { get; init; }
    public required byte[] Raw { get; init; }
    public required string Outcome { get; init; }
    public required bool StrictDefault { get; init; }
    public required int MessagesComplete { get; init; }
    public required string[] Log { get; init; }
    public bool IsRequest => Type.StartsWith("request", StringComparison.Ordinal);

    /// <summary>Messages whose head llhttp completed, rebuilt from the callback log (spans are offsets into Raw).</summary>
    public List<ParsedMessage> ExpectedMessages()
    {
        var messages = new List<ParsedMessage>();
        ParsedMessage? current = null;
        var inTrailers = false;
        string? lastKind = null;
        var protocol = "";
        var version = "";
        foreach (var line in Log)
        {
            var span = SpanRegex().Match(line);
            if (span.Success)
            {
                var off = int.Parse(span.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
                var len = int.Parse(span.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
                var kind = span.Groups[3].Value;
                var text = TestSequences.Text(Raw.AsSpan(off, len));
                current ??= new ParsedMessage();
                var fields = inTrailers ? current.Trailers : current.Headers;
                switch (kind)
                {
                    case "method":
                        current.Method += text;
                        break;
                    case "url":
                        current.Target += text;
                        break;
                    case "protocol":
                        protocol += text;
                        break;
                    case "version":
                        version += text;
                        break;
                    case "header_field":
                        if (lastKind == "header_field")
                        {
                            fields[^1] = (fields[^1].Name + text, "");
                        }
                        else
                        {
                            fields.Add((text, ""));
                        }

                        break;
                    case "header_value":
                        fields[^1] = (fields[^1].Name, fields[^1].Value + text);
                        break;
                    case "body":
                        current.Body.AddRange(Raw.AsSpan(off, len).ToArray());
                        break;
                }

                lastKind = kind;
                continue;
            }

            lastKind = null;
            if (line.Contains(" message begin", StringComparison.Ordinal))
            {
                current = new ParsedMessage();
                inTrailers = false;
                protocol = "";
                version = "";
            }
            else if (line.Contains(" headers complete", StringComparison.Ordinal) && current is not null)
            {
                var status = StatusRegex().Match(line);
                if (status.Success)
                {
                    current.Status = int.Parse(status.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
                }

                current.Version = version == "1.0" ? Http1Version.Http10 : Http1Version.Http11;
                messages.Add(current);
            }
            else if (line.Contains(" chunk header len=0", StringComparison.Ordinal))
            {
                inTrailers = true;
            }
            else if (line.Contains(" message complete", StringComparison.Ordinal) && current is not null)
            {
                current.Complete = true;
            }
        }

        // llhttp reports field values with trailing whitespace; RFC 9110 §5.5 excludes it, and so do we.
        foreach (var m in messages)
        {
            for (var i = 0; i < m.Headers.Count; i++)
            {
                m.Headers[i] = (m.Headers[i].Name, m.Headers[i].Value.TrimEnd(' ', '\t'));
            }

            for (var i = 0; i < m.Trailers.Count; i++)
            {
                m.Trailers[i] = (m.Trailers[i].Name, m.Trailers[i].Value.TrimEnd(' ', '\t'));
            }
        }

        return messages;
    }

    [GeneratedRegex(@"^off=(\d+) len=(\d+) span\[(\w+)\]=")]
    private static partial Regex SpanRegex();

    [GeneratedRegex(@"headers complete status=(\d+)")]
    private static partial Regex StatusRegex();
}

internal static class LlhttpCorpus
{
    private static readonly Lazy<Dictionary<string, LlhttpCase>> _cases = new(Load);

    public static IReadOnlyDictionary<string, LlhttpCase> Cases => _cases.Value;

    public static string FindCorpusPath()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Proxy.sln")))
        {
            dir = dir.Parent;
        }

        if (dir is null)
        {
            throw new InvalidOperationException($"Could not find the repository root (a folder containing Proxy.sln) above {AppContext.BaseDirectory}.");
        }

        var path = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "data", "llhttp-cases", "llhttp-cases.json"));
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The llhttp corpus is missing: expected {path} (../shared/data/llhttp-cases relative to the repository root {dir.FullName}).", path);
        }

        return path;
    }

    private static Dictionary<string, LlhttpCase> Load()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(FindCorpusPath()));
        var cases = new Dictionary<string, LlhttpCase>(StringComparer.Ordinal);
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            var id = $"{e.GetProperty("file").GetString()}:{e.GetProperty("line").GetInt32()}";
            cases[id] = new LlhttpCase
            {
                Id = id,
                Type = e.GetProperty("type").GetString()!,
                Raw = Convert.FromBase64String(e.GetProperty("raw_b64").GetString()!),
                Outcome = e.GetProperty("outcome").GetString()!,
                StrictDefault = e.GetProperty("strict_default").GetBoolean(),
                MessagesComplete = e.GetProperty("messages_complete").GetInt32(),
                Log = e.GetProperty("log").EnumerateArray().Select(l => l.GetString()!).ToArray(),
            };
        }

        return cases;
    }
}
