namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>An expected failure of the harness (missing tool, peer that did not start): reported without a stack trace.</summary>
internal sealed class E2eException : Exception
{
    public E2eException()
    {
    }

    public E2eException(string message)
        : base(message)
    {
    }

    public E2eException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
