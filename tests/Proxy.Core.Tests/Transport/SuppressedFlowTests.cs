using Proxy.Core.Tests.TestSupport;
using Proxy.Core.Transport;
using Xunit;

namespace Proxy.Core.Tests.Transport;

public sealed class SuppressedFlowTests
{
    private static readonly AsyncLocal<string?> Local = new();

    [Fact]
    public async Task Begin_AnAsyncMethodStartedInside_DoesNotCarryTheStartersAsyncLocals()
    {
        Local.Value = "starter";
        Task<string?> inside;
        using (SuppressedFlow.Begin())
        {
            Assert.True(ExecutionContext.IsFlowSuppressed());
            inside = ReadAfterYieldAsync();
        }

        var outside = ReadAfterYieldAsync();
        Assert.False(ExecutionContext.IsFlowSuppressed());
        Assert.Null(await inside.WaitAsync(TestTimeouts.Short));
        Assert.Equal("starter", await outside.WaitAsync(TestTimeouts.Short));
    }

    [Fact]
    public void Begin_Nested_OnlyTheOuterScopeRestoresFlow()
    {
        using (SuppressedFlow.Begin())
        {
            using (SuppressedFlow.Begin())
            {
                Assert.True(ExecutionContext.IsFlowSuppressed());
            }

            Assert.True(ExecutionContext.IsFlowSuppressed());
        }

        Assert.False(ExecutionContext.IsFlowSuppressed());
    }

    [Fact]
    public async Task Ensure_OffAnEventLoop_LeavesFlowAlone()
    {
        await Task.Run(() =>
        {
            SuppressedFlow.Ensure();
            Assert.False(ExecutionContext.IsFlowSuppressed());
        }).WaitAsync(TestTimeouts.Short);
        SuppressedFlow.Ensure();
        Assert.False(ExecutionContext.IsFlowSuppressed());
    }

    private static async Task<string?> ReadAfterYieldAsync()
    {
        await Task.Yield();
        return Local.Value;
    }
}
