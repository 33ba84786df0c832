# A small HTTP/1.1 server in Ruby's standard library on hotcluster's
# socket: fd 3 (LISTEN_FDS) as a TCPServer, READY=1 on NOTIFY_SOCKET, a
# thread per connection with keep-alive, and on SIGTERM a drain: the
# listener is closed, each connection answers its next request with
# "Connection: close", an idle one is closed after 2s without a request,
# and the process exits once every connection has ended.
require "socket"

def notify(msg)
  path = ENV["NOTIFY_SOCKET"] or return
  s = Socket.new(:UNIX, :DGRAM)
  s.send(msg, 0, Socket.pack_sockaddr_un(path))
  s.close
rescue SystemCallError
end

abort "no socket from LISTEN_FDS" unless ENV["LISTEN_PID"].to_i == Process.pid && ENV["LISTEN_FDS"].to_i >= 1
# The listener is non-blocking, shared with the master; Ruby's accept
# waits for it without changing that.
server = TCPServer.for_fd(3)
stop_at = nil
stop_r, stop_w = IO.pipe
Signal.trap("TERM") { stop_w.write_nonblock("x") rescue nil }
threads = []

serve = lambda do |c|
  buf = +""
  loop do
    if (i = buf.index("\r\n\r\n"))
      head = buf[0...i].downcase
      buf = buf[(i + 4)..]
      closing = !stop_at.nil? || head.include?("connection: close")
      body = "hello pid=#{Process.pid} gen=#{ENV["HOTCLUSTER_GENERATION"]} worker=#{ENV["HOTCLUSTER_WORKER_ID"]}\n"
      c.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: #{body.bytesize}\r\n#{closing ? "Connection: close\r\n" : ""}\r\n#{body}")
      break if closing
      next
    end
    if IO.select([c], nil, nil, 0.1)
      data = c.read_nonblock(4096, exception: false)
      break if data.nil?
      buf << data if data.is_a?(String)
    elsif stop_at && Process.clock_gettime(Process::CLOCK_MONOTONIC) - stop_at >= 2
      break
    end
  end
rescue SystemCallError, IOError
ensure
  c.close rescue nil
end

notify("READY=1")
loop do
  ready, = IO.select([server, stop_r])
  break if ready.include?(stop_r)
  c = server.accept_nonblock(exception: false)
  next if c == :wait_readable
  threads << Thread.new(c, &serve)
end
stop_at = Process.clock_gettime(Process::CLOCK_MONOTONIC)
server.close # never shutdown(2): the socket is shared
notify("STOPPING=1")
threads.each(&:join)
