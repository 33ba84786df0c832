# A Rack app for puma.
run lambda { |env|
  body = "hello pid=#{Process.pid} gen=#{ENV["HOTCLUSTER_GENERATION"]} worker=#{ENV["HOTCLUSTER_WORKER_ID"]}\n"
  [200, { "Content-Type" => "text/plain", "Content-Length" => body.bytesize.to_s }, [body]]
}
