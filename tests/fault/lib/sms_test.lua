-- wrk script: POST /api/sms/test with the bearer token in the BYOC_TOKEN environment variable.
wrk.method = "POST"
wrk.body = '{"to":"+14155550124"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BYOC_TOKEN")
