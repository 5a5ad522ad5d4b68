using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.Tests.E2e.Infrastructure;

public sealed class ChildProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task WaitForOutputAsync_MarkerPrinted_CompletesAndDisposeKills()
    {
        var child = ChildProcess.Start("sh", "/bin/sh", ["-c", "echo started; exec sleep 60"]);
        await child.WaitForOutputAsync("started").WaitAsync(Timeout);
        Assert.False(child.HasExited);

        await child.DisposeAsync();

        Assert.True(child.HasExited);
        Assert.False(Directory.Exists($"/proc/{child.Id}/task"), "the process should be reaped");
    }

    [Fact]
    public async Task KillAll_RunningChild_KillsIt()
    {
        var child = ChildProcess.Start("sleep", "/bin/sleep", ["60"]);
        try
        {
            ChildProcessRegistry.KillAll();
            await child.Exited.WaitAsync(Timeout);
            Assert.True(child.HasExited);
        }
        finally
        {
            await child.DisposeAsync();
        }
    }

    [Fact]
    public async Task RunAsync_Command_ReturnsExitCodeAndOutput()
    {
        var result = await ProcessRunner.RunAsync("/bin/sh", ["-c", "echo one; echo two; exit 3"], Timeout, CancellationToken.None).WaitAsync(Timeout);

        Assert.Equal(3, result.ExitCode);
        Assert.Equal("one\ntwo\n", result.StandardOutput);
    }

    [Fact]
    public async Task RunAsync_TooSlow_ThrowsAndKills()
    {
        var error = await Assert.ThrowsAsync<E2eException>(
            () => ProcessRunner.RunAsync("/bin/sh", ["-c", "echo waiting; exec sleep 60"], TimeSpan.FromMilliseconds(300), CancellationToken.None).WaitAsync(Timeout));

        Assert.Contains("did not finish", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Start_MissingExecutable_ThrowsNamingIt()
    {
        var error = Assert.Throws<E2eException>(() => ChildProcess.Start("ghost", "/nonexistent/ghost", []));

        Assert.Contains("/nonexistent/ghost", error.Message, StringComparison.Ordinal);
    }
}
