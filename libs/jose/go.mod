module github.com/agentidp/agentidp/libs/jose

go 1.26
