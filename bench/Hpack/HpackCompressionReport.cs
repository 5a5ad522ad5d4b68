using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Proxy.Bench.E2e;
using Proxy.Http.Http2.Hpack;

namespace Proxy.Bench.Hpack;

/// <summary>One story of the hpack-test-case corpus: per case, the header list and (except raw-data) the wire block.</summary>
internal sealed record HpackStoryData(string Name, IReadOnlyList<IReadOnlyList<(string Name, string Value)>> Cases, IReadOnlyList<byte[]?> Wires);

/// <summary>
/// One row of the report: an implementation's total wire bytes over the stories whose header lists equal raw-data's,
/// next to the raw header bytes (name + value, no separators) and our encoder's bytes over the same stories.
/// </summary>
internal sealed record HpackReportRow(string Implementation, int Stories, long WireBytes, long RawBytes, long OurBytes)
{
    public double RatioToRaw => RawBytes == 0 ? 0 : (double)WireBytes / RawBytes;

    public double RatioToOurs => OurBytes == 0 ? 0 : (double)WireBytes / OurBytes;
}

/// <summary>
/// <c>dotnet run -c Release --project bench -- hpack [--corpus DIR] [--output DIR]</c>: the compression report.
/// Encodes every raw-data story with our encoder (one encoder per story, like one connection) and compares the
/// total with the wire bytes the other implementations of the corpus produced for the same header lists.
/// </summary>
internal static class HpackCompressionReport
{
    public const string OursName = "proxy (this encoder)";
    public const string OursCookiesName = "proxy, cookies indexable";

    public static int Run(string[] args)
    {
        string? corpus = null;
        string? output = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--corpus" when i + 1 < args.Length:
                    corpus = args[++i];
                    break;
                case "--output" when i + 1 < args.Length:
                    output = args[++i];
                    break;
                default:
                    Console.Error.WriteLine("usage: hpack [--corpus DIR] [--output DIR]  (defaults: ../shared/data/hpack-test-case, bench/results)");
                    return 64;
            }
        }

        var root = E2eContext.FindRepositoryRoot();
        corpus ??= Path.GetFullPath(Path.Combine(root, "..", "shared", "data", "hpack-test-case"));
        if (!Directory.Exists(Path.Combine(corpus, "raw-data")))
        {
            Console.Error.WriteLine($"hpack: no raw-data stories under {corpus} (pass --corpus DIR)");
            return 66;
        }

        var raw = LoadImplementation(Path.Combine(corpus, "raw-data"));
        var others = new SortedDictionary<string, IReadOnlyList<HpackStoryData>>(StringComparer.Ordinal);
        foreach (var dir in Directory.GetDirectories(corpus))
        {
            var name = Path.GetFileName(dir);
            if (name != "raw-data")
            {
                others[name] = LoadImplementation(dir);
            }
        }

        var rows = Compute(raw, others, static s => EncodeWithOurs(s, new HpackEncoderOptions()));
        var cookies = Compute(raw, new Dictionary<string, IReadOnlyList<HpackStoryData>>(), static s => EncodeWithOurs(s, new HpackEncoderOptions { NeverIndexCookies = false }))[0];
        rows.Insert(1, cookies with { Implementation = OursCookiesName, OurBytes = rows[0].OurBytes });
        var now = TimeProvider.System.GetUtcNow();
        var markdown = ToMarkdown(rows, now);
        Console.WriteLine(markdown);

        output ??= Path.Combine(root, "bench", "results");
        Directory.CreateDirectory(output);
        var file = Path.Combine(output, $"hpack-{now.ToString("yyyyMMdd-HHmm", CultureInfo.InvariantCulture)}.md");
        File.WriteAllText(file, markdown);
        Console.WriteLine($"written to {file}");
        return 0;
    }

    /// <summary>
    /// The rows: ours over every raw-data story first, then one per implementation over the stories it encoded with
    /// the same header lists (every case equal, in order); ratios to ours use our bytes for exactly those stories.
    /// </summary>
    public static List<HpackReportRow> Compute(
        IReadOnlyList<HpackStoryData> raw,
        IReadOnlyDictionary<string, IReadOnlyList<HpackStoryData>> implementations,
        Func<HpackStoryData, long> encodeOurs)
    {
        var ours = new Dictionary<string, long>(StringComparer.Ordinal);
        long oursTotal = 0;
        long rawTotal = 0;
        foreach (var story in raw)
        {
            var bytes = encodeOurs(story);
            ours[story.Name] = bytes;
            oursTotal += bytes;
            rawTotal += RawBytes(story);
        }

        var rows = new List<HpackReportRow> { new(OursName, raw.Count, oursTotal, rawTotal, oursTotal) };
        foreach (var (name, stories) in implementations)
        {
            var count = 0;
            long wire = 0;
            long rawBytes = 0;
            long ourBytes = 0;
            foreach (var story in stories)
            {
                var reference = raw.FirstOrDefault(r => r.Name == story.Name);
                if (reference is null || !SameHeaders(reference, story) || story.Wires.Any(w => w is null))
                {
                    continue;
                }

                count++;
                wire += story.Wires.Sum(w => (long)w!.Length);
                rawBytes += RawBytes(reference);
                ourBytes += ours[story.Name];
            }

            rows.Add(new HpackReportRow(name, count, wire, rawBytes, ourBytes));
        }

        return rows;
    }

    /// <summary>Sum over cases of name + value bytes (ASCII).</summary>
    public static long RawBytes(HpackStoryData story) =>
        story.Cases.Sum(c => c.Sum(h => (long)Encoding.ASCII.GetByteCount(h.Name) + Encoding.ASCII.GetByteCount(h.Value)));

    /// <summary>Our encoder's total bytes for a story: one encoder for the whole story, one block per case.</summary>
    public static long EncodeWithOurs(HpackStoryData story, HpackEncoderOptions options)
    {
        var encoder = new HpackEncoder(options);
        var output = new ArrayBufferWriter<byte>();
        long total = 0;
        foreach (var list in story.Cases)
        {
            output.ResetWrittenCount();
            encoder.BeginHeaderBlock(output);
            foreach (var (name, value) in list)
            {
                encoder.EncodeHeader(output, Encoding.ASCII.GetBytes(name), Encoding.ASCII.GetBytes(value));
            }

            total += output.WrittenCount;
        }

        return total;
    }

    public static string ToMarkdown(IReadOnlyList<HpackReportRow> rows, DateTimeOffset when)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.Append(inv, $"# HPACK compression, hpack-test-case raw-data stories ({when:yyyy-MM-dd HH:mm} UTC)\n\n");
        sb.Append("Raw = sum of name + value bytes. Other implementations count only the stories whose header lists equal raw-data's; ")
          .Append("their \"ratio to ours\" compares with our encoder on exactly those stories. Lower is better.\n\n");
        sb.Append("| implementation | stories | total bytes | ratio to raw | ratio to ours |\n");
        sb.Append("| --- | ---: | ---: | ---: | ---: |\n");
        foreach (var row in rows)
        {
            sb.Append(inv, $"| {row.Implementation} | {row.Stories} | {row.WireBytes} | {row.RatioToRaw:0.000} | {row.RatioToOurs:0.000} |\n");
        }

        return sb.ToString();
    }

    private static bool SameHeaders(HpackStoryData a, HpackStoryData b)
    {
        if (a.Cases.Count != b.Cases.Count)
        {
            return false;
        }

        for (var i = 0; i < a.Cases.Count; i++)
        {
            if (!a.Cases[i].SequenceEqual(b.Cases[i]))
            {
                return false;
            }
        }

        return true;
    }

    private static List<HpackStoryData> LoadImplementation(string dir)
    {
        var stories = new List<HpackStoryData>();
        foreach (var file in Directory.GetFiles(dir, "story_*.json").Order(StringComparer.Ordinal))
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            var cases = new List<IReadOnlyList<(string, string)>>();
            var wires = new List<byte[]?>();
            foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            {
                wires.Add(c.TryGetProperty("wire", out var w) && w.ValueKind == JsonValueKind.String ? Convert.FromHexString(w.GetString()!) : null);
                var headers = new List<(string, string)>();
                foreach (var h in c.GetProperty("headers").EnumerateArray())
                {
                    foreach (var p in h.EnumerateObject())
                    {
                        headers.Add((p.Name, p.Value.GetString() ?? ""));
                    }
                }

                cases.Add(headers);
            }

            stories.Add(new HpackStoryData(Path.GetFileNameWithoutExtension(file), cases, wires));
        }

        return stories;
    }
}
