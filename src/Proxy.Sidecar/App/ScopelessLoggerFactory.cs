using Microsoft.Extensions.Logging;

namespace Proxy.Sidecar.App;

/// <summary>
/// The logger factory handed to Kestrel: the same loggers, without scopes. Kestrel opens a logging scope for every
/// connection (its connection id), which the console logger's scope provider keeps in an <c>AsyncLocal</c>: an
/// execution-context copy per connection that every later continuation of the connection carries. Our console
/// output does not print scopes, so the scope would be pure cost.
/// </summary>
internal sealed class ScopelessLoggerFactory(ILoggerFactory inner) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new ScopelessLogger(inner.CreateLogger(categoryName));

    public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

    public void Dispose()
    {
        // The inner factory belongs to whoever created it.
    }

    private sealed class ScopelessLogger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            inner.Log(logLevel, eventId, state, exception, formatter);
    }
}
