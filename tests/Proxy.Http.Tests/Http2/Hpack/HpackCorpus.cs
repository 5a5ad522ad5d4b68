using System.Text.Json;

namespace Proxy.Http.Tests.Http2.Hpack;

/// <summary>One case of a story: the wire block (absent in raw-data) and the header list it decodes to.</summary>
internal sealed record HpackCase(byte[]? Wire, List<(string Name, string Value)> Headers, int? HeaderTableSize);

/// <summary>A story of the hpack-test-case corpus (../shared/data/hpack-test-case/&lt;implementation&gt;/story_NN.json).</summary>
internal sealed record HpackStory(string Implementation, string Name, List<HpackCase> Cases)
{
    public override string ToString() => $"{Implementation}/{Name}";
}

/// <summary>Locates and loads the corpus, the way LlhttpCorpus does for llhttp.</summary>
internal static class HpackCorpus
{
    private static readonly Lazy<List<HpackStory>> s_stories = new(Load);

    public static IReadOnlyList<HpackStory> Stories => s_stories.Value;

    public static string FindCorpusDirectory()
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

        var path = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "data", "hpack-test-case"));
        if (!Directory.Exists(path))
        {
            throw new DirectoryNotFoundException($"The hpack-test-case corpus is missing: expected {path} (../shared/data/hpack-test-case relative to the repository root {dir.FullName}).");
        }

        return path;
    }

    public static HpackStory Find(string implementation, string name) =>
        Stories.Single(s => s.Implementation == implementation && s.Name == name);

    public static HpackStory LoadStory(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
        var cases = new List<HpackCase>();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            byte[]? wire = c.TryGetProperty("wire", out var w) && w.ValueKind == JsonValueKind.String ? Convert.FromHexString(w.GetString()!) : null;
            int? size = c.TryGetProperty("header_table_size", out var s) && s.ValueKind == JsonValueKind.Number ? s.GetInt32() : null;
            var headers = new List<(string, string)>();
            foreach (var h in c.GetProperty("headers").EnumerateArray())
            {
                foreach (var p in h.EnumerateObject())
                {
                    headers.Add((p.Name, p.Value.GetString()!));
                }
            }

            cases.Add(new HpackCase(wire, headers, size));
        }

        return new HpackStory(Path.GetFileName(Path.GetDirectoryName(file)!), Path.GetFileNameWithoutExtension(file), cases);
    }

    private static List<HpackStory> Load()
    {
        var root = FindCorpusDirectory();
        var stories = new List<HpackStory>();
        foreach (var dir in Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            foreach (var file in Directory.GetFiles(dir, "story_*.json").Order(StringComparer.Ordinal))
            {
                stories.Add(LoadStory(file));
            }
        }

        return stories;
    }
}
