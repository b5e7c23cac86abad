$TTL 3600
@ IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300
@ IN NS ns1.example.com.
ns1 IN A 192.0.2.1
