using Proxy.Tls.ClientHello;
using Proxy.Tls.Tests.ClientHello;

namespace Proxy.Tls.Tests.Fuzz;

/// <summary>
/// Inputs from the AFL++ fuzzing of tests/fuzz (see tests/fuzz/README.md). clienthello crash id:000000 (first run)
/// was the harness expecting the scratch-less overload to refuse only valid multi-record hellos as ScratchTooSmall;
/// the parser refuses every hello that spans records that way, valid or not, since it cannot read the body. Pinned
/// here, with the scratch overloads still giving the real verdict.
/// </summary>
public sealed class ClientHelloFuzzRegressionTests
{
    [Theory]
    [InlineData("bad name.example", ClientHelloStatus.Invalid, ClientHelloError.InvalidServerName)]
    [InlineData("good.example", ClientHelloStatus.Parsed, ClientHelloError.None)]
    public void HelloSpanningRecords_WithoutScratch_ScratchTooSmall_WithScratch_RealVerdict(string host, ClientHelloStatus status, ClientHelloError error)
    {
        var wire = ClientHelloVectors.Fragment(TestHelloBuilder.Message(TestHelloBuilder.ServerName(host)), 40);

        var noScratch = ClientHelloParser.TryParse(wire, out _);
        Assert.Equal(ClientHelloStatus.Invalid, noScratch.Status);
        Assert.Equal(ClientHelloError.ScratchTooSmall, noScratch.Error);

        var scratch = new byte[ClientHelloParser.MaxMessageLength];
        var span = ClientHelloParser.TryParse(wire, scratch, out _);
        Assert.Equal((status, error), (span.Status, span.Error));

        var sequenceScratch = new byte[ClientHelloParser.SequenceScratchLength];
        var sequence = ClientHelloParser.TryParse(TestSequences.Split(wire, 7, 50, 51), sequenceScratch, out _);
        Assert.Equal(span, sequence);
    }
}
