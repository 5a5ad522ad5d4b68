using Proxy.Sidecar.Iptables;

namespace Proxy.Sidecar.Tests.Iptables;

public sealed class ProcessCommandRunnerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly ProcessCommandRunner _runner = new();

    [Fact]
    public void Locate_InstalledProgram_ReturnsAbsolutePath()
    {
        var path = _runner.Locate("sh");

        Assert.NotNull(path);
        Assert.True(Path.IsPathRooted(path));
        Assert.True(File.Exists(path));
    }

    [Fact]
    public void Locate_MissingProgram_ReturnsNull()
    {
        Assert.Null(_runner.Locate("pxt-no-such-program"));
        Assert.Null(_runner.Locate("/nonexistent/pxt-no-such-program"));
    }

    [Fact]
    public async Task RunAsync_StandardInput_IsFedAndOutputCaptured()
    {
        var result = await _runner.RunAsync(_runner.Locate("cat")!, [], "*nat\nCOMMIT\n", CancellationToken.None).WaitAsync(Timeout);

        Assert.Equal(new CommandResult(0, "*nat\nCOMMIT\n", ""), result);
    }

    [Fact]
    public async Task RunAsync_FailingProgram_ReturnsExitCodeAndStandardError()
    {
        var result = await _runner.RunAsync(_runner.Locate("sh")!, ["-c", "echo 'line 3 failed' >&2; exit 3"], null, CancellationToken.None).WaitAsync(Timeout);

        Assert.Equal(3, result.ExitCode);
        Assert.Equal("line 3 failed\n", result.StandardError);
    }

    [Fact]
    public async Task RunAsync_ProgramIgnoringLargeInput_DoesNotThrow()
    {
        var input = new string('x', 1 << 20);

        var result = await _runner.RunAsync(_runner.Locate("sh")!, ["-c", "exit 2"], input, CancellationToken.None).WaitAsync(Timeout);

        Assert.Equal(2, result.ExitCode);
    }

    [Fact]
    public async Task RunAsync_MissingFile_Returns127WithSentence()
    {
        var result = await _runner.RunAsync("/nonexistent/iptables-restore", [], null, CancellationToken.None).WaitAsync(Timeout);

        Assert.Equal(127, result.ExitCode);
        Assert.StartsWith("cannot start /nonexistent/iptables-restore: ", result.StandardError, StringComparison.Ordinal);
    }
}
