using Proxy.Core.Configuration;

namespace Proxy.Core.Tests.Configuration;

/// <summary>The protocol detection settings: --detect-timeout / detect.timeout and --opaque-ports / detect.opaquePorts.</summary>
public sealed class DetectSettingsTests
{
    private static ConfigResult Load(string? json, params (string Flag, string Value)[] flags)
        => ConfigLoader.Load(flags.ToDictionary(f => f.Flag, f => f.Value), json);

    [Fact]
    public void Load_NothingGiven_DetectDefaults()
    {
        var c = Load(null).Config!;
        Assert.Equal(TimeSpan.FromSeconds(10), c.Detect.Timeout);
        Assert.Equal([25, 587, 3306, 4444, 5432, 6379, 9300, 11211], c.Detect.OpaquePorts);
    }

    [Fact]
    public void Load_FileThenFlags_FlagsOverrideFile()
    {
        const string json = """{ "detect": { "timeout": "2s", "opaquePorts": "5432, 25" } }""";
        var fileOnly = Load(json);
        Assert.True(fileOnly.Ok, string.Join("\n", fileOnly.Errors));
        Assert.Equal(TimeSpan.FromSeconds(2), fileOnly.Config!.Detect.Timeout);
        Assert.Equal([25, 5432], fileOnly.Config.Detect.OpaquePorts);

        var withFlags = Load(json, ("detect-timeout", "300ms"), ("opaque-ports", "3306"));
        Assert.True(withFlags.Ok, string.Join("\n", withFlags.Errors));
        Assert.Equal(TimeSpan.FromMilliseconds(300), withFlags.Config!.Detect.Timeout);
        Assert.Equal([3306], withFlags.Config.Detect.OpaquePorts);
    }

    [Fact]
    public void Load_EmptyOpaquePorts_None()
    {
        var result = Load(null, ("opaque-ports", ""));
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Empty(result.Config!.Detect.OpaquePorts);
    }

    [Fact]
    public void Load_SinglePortInFileAsNumber_Accepted()
    {
        var result = Load("""{ "detect": { "opaquePorts": 6379 } }""");
        Assert.True(result.Ok, string.Join("\n", result.Errors));
        Assert.Equal([6379], result.Config!.Detect.OpaquePorts);
    }

    [Theory]
    [InlineData("detect-timeout", "5", "--detect-timeout: \"5\" is not a duration")]
    [InlineData("detect-timeout", "off", "--detect-timeout: \"off\" is not a duration")]
    [InlineData("detect-timeout", "0s", "--detect-timeout: \"0s\" is out of range")]
    [InlineData("opaque-ports", "3306,abc", "--opaque-ports: \"abc\" is not a port (1-65535)")]
    [InlineData("opaque-ports", "70000", "--opaque-ports: \"70000\" is not a port (1-65535)")]
    [InlineData("opaque-ports", "0", "--opaque-ports: \"0\" is not a port (1-65535)")]
    [InlineData("opaque-ports", "25,,587", "--opaque-ports: \"\" is not a port (1-65535)")]
    [InlineData("opaque-ports", "25,25", "--opaque-ports: port 25 is listed twice")]
    public void Load_BadFlag_ErrorNamesTheFlag(string flag, string value, string expected)
    {
        var result = Load(null, (flag, value));
        Assert.False(result.Ok);
        Assert.StartsWith(expected, Assert.Single(result.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public void Load_BadFileKeys_ErrorsNameTheKeys()
    {
        var result = Load("""{ "detect": { "timeout": "soon", "opaquePorts": "1-2", "bogus": 1 } }""");
        Assert.False(result.Ok);
        Assert.Contains(result.Errors, e => e.StartsWith("detect.timeout: ", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.StartsWith("detect.opaquePorts: ", StringComparison.Ordinal));
        Assert.Contains("detect.bogus: unknown key", result.Errors);
        Assert.Equal(3, result.Errors.Count);
    }

    [Fact]
    public void ToJson_DetectSection_RoundTrips()
    {
        var first = Load(null, ("detect-timeout", "1500ms"), ("opaque-ports", "11211,25")).Config!;
        var written = ConfigJson.ToJson(first);
        Assert.Contains("\"detect\": {", written, StringComparison.Ordinal);
        Assert.Contains("\"opaquePorts\": \"25,11211\"", written, StringComparison.Ordinal);

        var second = Load(written);
        Assert.True(second.Ok, string.Join("\n", second.Errors));
        Assert.Equal(TimeSpan.FromMilliseconds(1500), second.Config!.Detect.Timeout);
        Assert.Equal([25, 11211], second.Config.Detect.OpaquePorts);
        Assert.Equal(written, ConfigJson.ToJson(second.Config));
    }

    [Fact]
    public void Settings_DetectFlags_AreInTheTable()
    {
        Assert.Contains(Setting.All, s => s.Flag == "detect-timeout" && s.Path == "detect.timeout" && s.Default == "10s");
        Assert.Contains(Setting.All, s => s.Flag == "opaque-ports" && s.Path == "detect.opaquePorts" && s.Default == "25,587,3306,4444,5432,6379,9300,11211");
    }
}
